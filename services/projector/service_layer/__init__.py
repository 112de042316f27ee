"""The projector's application layer: commands that load the write model, decide and save."""
