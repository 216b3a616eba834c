# Every rule's script: runs kagglecv.jobs.<rule name> with the rule's files and settings, logged to its log.
from kagglecv.jobs import run

run(snakemake)  # noqa: F821 - Snakemake gives every script its `snakemake` object
