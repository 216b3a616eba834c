# Kaggle download, kernel and submit rules. The kaggle settings are read from the config (submit) or travel as
# one mapping (kernel). Credentials are never params: the kaggle client reads
# ~/.kaggle/kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY or KAGGLE_API_TOKEN itself, and kagglecv.core.secrets
# redacts everything the jobs log.
KAGGLE = config["kaggle"]  # defaults from the schema


# Only data.source: kaggle asks for data/kaggle/<competition>/.complete (see data_input()), so the rule
# runs only then. The marker is the rule's only output: a rerun of the rule (its script edited,
# --forcerun) deletes the marker, never the files, and the download step restores the marker from
# manifest.json beside it without a network call. Retry settings are read from the config inside the
# job, not passed as params, so changing them never triggers a rerun either: a 50 GB competition is
# downloaded once. An interrupted download leaves no marker and starts over.
rule download:
    output:
        marker=str(downloaded("{competition}").marker),
    log:
        "data/kaggle/{competition}/download.log",
    wildcard_constraints:
        competition="[A-Za-z0-9][A-Za-z0-9_-]*",
    retries: 0  # download_competition retries network errors and 5xx itself, with backoff
    conda:
        DATA_ENV
    script:
        JOB


# `snakemake submit`: builds the submission if needed, submits it, waits for the public score and
# appends a row to results/<competition>/leaderboard.csv. Not part of `all`. On a code competition
# (kaggle.code_competition, or auto and Kaggle says so) it uploads the kernel dataset, runs the kernel on
# Kaggle and submits the kernel's output instead (kagglecv.kaggle.code).
# No output on purpose, so the rule runs every time it is asked for: a submission is an action, not
# a file. A declared marker or leaderboard.csv would be wrong either way: Snakemake deletes a job's
# outputs before it runs (losing the earlier leaderboard rows), and its params/code rerun triggers
# would resubmit silently after editing e.g. kaggle.timeout. leaderboard.csv is appended under a
# lock instead, one row per submission (time, message, cv, public_score, private_score, ref).
rule submit:
    input:
        submission=str(L.submission),
        scores=str(L.scores),
        kernel=kernel_inputs(),
    log:
        str(L.log("submit")),
    retries: 0  # never resubmit blindly: a failed call may still have counted against the daily limit
    conda:
        DATA_ENV
    params:
        competition=COMP,
        repo=workflow.basedir,  # the commit in the message is the workflow code's, not the run folder's
    script:
        JOB


# `snakemake kernel`: a code competition's notebook and the dataset it needs (weights, configs, the ensemble,
# wheels), from a finished run; kagglecv.kaggle.kernel says what is in each. Not part of `all`.
rule kernel:
    input:
        scores=str(L.scores),
        meta=str(L.meta),
        train=str(PREPARED.train),  # the training labels' prior
        models=all_fold_outputs("model"),
        configs=all_fold_outputs("config"),
        metrics=all_fold_outputs("metrics"),  # each fold's prediction time: the rerun's projection
    output:
        dataset=directory(str(L.kernel_dataset.path)),
        kernel=directory(str(L.kernel.path)),
    log:
        str(L.log("kernel")),
    conda:
        DATA_ENV
    params:
        competition=COMP,
        kaggle={k: KAGGLE[k] for k in KERNEL_KEYS},  # what the kernel is built from: a change rebuilds it
        repo=workflow.basedir,  # kagglecv's wheel is built from the workflow's own code
        student=STUDENT,
    script:
        JOB
