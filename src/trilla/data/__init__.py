"""The data layer: sources -> store -> labelled dataset -> splits -> DataModule."""
