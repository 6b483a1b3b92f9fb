"""Reports: console, JSON/CSV/Markdown, HTML, charts, figures, leaderboard, translations."""
