"""The base of every config section, shared by config.py and the parts that own a section's schema
(input kinds, augmentations) without importing the whole config."""

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

LARGEST = 2**32  # no count, size or seed trilla takes is larger; a 30-digit epochs is a typo


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated too, and no whole number is
    beyond `LARGEST` (pydantic takes ints of any size, and a loop over 10**29 epochs never ends)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="after")
    @classmethod
    def _not_huge(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > LARGEST:
            raise ValueError(f"{value:.3e} is far beyond any sensible value (at most {LARGEST})")
        return value
