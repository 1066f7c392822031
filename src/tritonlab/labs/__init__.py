"""Material the lab notebooks use: provided models, workspace preparation."""
