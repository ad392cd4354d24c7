"""Local intents: commands answered on the device without the language model."""
