"""The kinds of number the files between stages hold, as pydantic types.

A file that says an accuracy is 1.5, a size is -3 or a loss is ``inf`` is damaged: reading
it through these types refuses it with one line, like any other damage, rather than letting
the report print "150.00%".
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]  # accuracy, agreement, F1
Delta = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]  # between two fractions
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a loss, a rate, MB, ms, seconds
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]  # images a model was tested on, an epoch
