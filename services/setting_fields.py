"""Settings fields that name things the wire carries (symbols, strategy/connector/venue names),
checked by the wire's own patterns (``proto.fields``): a strategy or a replay configured with a
symbol the wire would refuse stops the process at start with the field's name, instead of a
session whose every quote and order is refused."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from proto.fields import valid_name, valid_symbol

SymbolField = Annotated[str, AfterValidator(valid_symbol)]
NameField = Annotated[str, AfterValidator(valid_name)]
