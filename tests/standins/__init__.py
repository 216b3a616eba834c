"""Stand-ins of MLE-bench's 19 image-classification competitions (layouts.py, layouts_more.py) and our own
re-implementation of their graders (graders.py); see tests/test_standins.py.

    from standins import make, grade
    s = make("whale-categorization-playground", tmp_path)       # tmp_path/public/, tmp_path/private/
    grade(s.slug, submission_csv, s.answers)                       # MAP@5, or InvalidSubmission
"""

from .common import Missing7z, Standin
from .graders import InvalidSubmission, grade, lower_is_better, prior_score, prior_submission, sample_score
from .layouts import SLUGS, make

__all__ = [
    "InvalidSubmission",
    "Missing7z",
    "SLUGS",
    "Standin",
    "grade",
    "lower_is_better",
    "make",
    "prior_score",
    "prior_submission",
    "sample_score",
]
