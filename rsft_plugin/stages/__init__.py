"""The stages of a rejection-sampling fine-tuning round, one module each, in the order they run:

collect -> sample -> score -> reject -> finetune -> gate -> promote -> report

Each module has one public entry point and passes typed records (records.py) to the next; `rounds.py` runs them
and records every stage's output in SQLite.
"""
