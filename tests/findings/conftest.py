from tests.findings.connector import security_connector  # noqa: F401 (a fixture for every findings test)
