"""Scoring: the competition's metric on out-of-fold predictions, the ensemble, and the submission.

metrics      the competition metrics and which tasks each suits (accuracy ... map@k)
decisions    a class, the labels over their thresholds, a grade between cut points
thresholds   per-label thresholds and ordinal cut points fitted on OOF, honestly nested
blend        the ensemble methods (mean, rank mean, best single, hill climbing, stacking), with honest CV
ensemble     the `ensemble` rule: members' OOF combined and scored, scores.json
submission   the `submission` rule: exactly the template's ids, order and columns, checked before it is written
"""
