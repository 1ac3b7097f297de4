"""steadyseg.train: model builders, losses and trainers (teachers, the multi-input decoder, video models)."""
