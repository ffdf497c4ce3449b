"""The sharpeyes command line and process wiring. No domain logic lives here."""
