"""Certification: the per-sample proof (certifier.py), a whole run with resume and records
(run.py, certificates.py, header.py), re-proving a certificate file (check.py), tables (report.py)."""
