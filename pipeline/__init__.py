"""Pipelines above nets/, export/ and verify/: the offline demo (demo.py with the export, certify,
attack and check steps in steps.py) and the audit of a model or checkpoint (audit.py,
audit_report.py)."""
