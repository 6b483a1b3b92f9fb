"""The run store beneath every stage: manifests, records, answers and verdicts, import."""
