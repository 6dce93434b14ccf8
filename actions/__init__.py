"""The rasa-sdk action package of rsft. Start it with `python -m rasa_sdk --actions actions`."""
