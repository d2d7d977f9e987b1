"""The Report (findings, facts, verified fixes), the rule documents, and one pure renderer per output format."""

from qdoctor.report.model import SCHEMA_VERSION, Report, to_dict

__all__ = ["SCHEMA_VERSION", "Report", "to_dict"]
