"""flames: evaluate how well large language models hold to human values in Chinese."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flames")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
