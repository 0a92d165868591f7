"""What is specific to the E2E NLG corpus (Novikova et al. 2017): its meaning representations.

A conditional model (data.condition_column) and the field-value classifier learn from MRs such as
'name[The Vaults], eatType[pub], food[English]'; `parse_mr` reads them.
"""

from __future__ import annotations

import re

MR_FIELD = re.compile(r"\s*([^\[\],]+)\[([^\]]*)\]")


def parse_mr(mr: str) -> dict[str, str]:
    """An E2E meaning representation as {field: value}: 'name[The Vaults], food[English]' ->
    {'name': 'The Vaults', 'food': 'English'}."""
    return {field.strip(): value.strip() for field, value in MR_FIELD.findall(mr)}
