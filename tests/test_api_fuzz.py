"""Schemathesis over /openapi.json: no 500, no undocumented status or content type, no
response that breaks its schema, no schema-invalid request accepted.

POST bodies may also get 422 for schema-valid data: cross-field rules the schema cannot
state (gpa below 2^MAXPHYADDR, CR0.NW needs CD, PHYSBASE bits above MAXPHYADDR, a quirk an
era cannot turn off, spte or line, ...), which schemathesis documents as the tuning for
that case.
"""

from __future__ import annotations

import logging

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from app.main import create_app

CONFIG = SchemathesisConfig.from_str(
    """
[[operations]]
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "422"]
"""
)

app = create_app()
logging.getLogger("memtype.access").setLevel(logging.WARNING)
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case):
    case.call_and_validate()
