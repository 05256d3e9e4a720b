"""The base of every config section, shared by config.py and the parts that own a section's schema
(input kinds, augmentations) without importing the whole config."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A config section: unknown keys are errors, and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
