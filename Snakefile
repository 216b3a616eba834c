# A Kaggle image-classification run, end to end: data -> folds -> (backbone x fold) training -> ensemble -> submission.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/lr_find.smk"
include: "rules/train.smk"
include: "rules/teachers.smk"
include: "rules/ensemble.smk"
include: "rules/kaggle.smk"
include: "rules/report.smk"
include: "rules/mlflow.smk"
include: "rules/tune.smk"


# rules/backbones/<name>.smk: a backbone's own rule, when it needs one (docs/extending.md)
for backbone_rule in BACKBONE_RULES:

    include: backbone_rule


rule all:
    input:
        default_targets(),
        report_targets(),
