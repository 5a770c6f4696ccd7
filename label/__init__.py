"""`mgs-label`: blind scoring of the monitor's evidence (or any images) into label CSVs.

queue (project.py, selection.py) -> serve (server.py, answers.py) -> export (export.py);
agreement.py measures raters against each other and themselves. Imports monitor/ and train/;
neither imports this package.
"""
