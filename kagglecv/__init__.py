"""kagglecv: reproducible Kaggle image-classification runs.

Which module serves which stage of the DAG (rules/*.smk; scripts/ are thin adapters, one call each, and the
library never imports snakemake):

  workflow-wide  config      layering, defaults, validation; backbones merged; cache side, threads, memory
                 layout      every path under results/<competition>/
                 steps       each rule's job: composes the pieces below, writes its outputs, logs to MLflow
                 runner      a job's log, and bad input as one `ERROR:` line with exit status 1
                 summary     the end of a run: close the MLflow parent run, print the CV table
                 cli         the `kagglecv` command (config, predict, backfill, download)
  download       kaggle_io   the official kaggle client: download, submit, score read back; redaction
                 archive     safe unpacking of competition zips, with limits
  demo           demo        the embedded digits competition, laid out as Kaggle ships one
                 demo_tasks  miniature competitions of every task kind (tests), with held-out scoring
  prepare        prepare     read the four layouts, validate, recognise the task, write the cache and tables
                 tasks       the task kinds (binary ... ordinal): targets, head width, activation, loss scale
                 images      decode images on every core, straight to disk (one decoder, also for predict)
  folds          folds       k-fold assignment per task (stratified, multi-label, binned, grouped), once
  lr_find        lr_finder   fastai's LR range test
  train          train       one (backbone, fold): timm model, one-cycle, AMP, EMA, mixup, TTA, resume
                 data        batches from the memory-mapped cache (DataLoader or on-device)
                 augment     augmentation and TTA presets (albumentations and batched tensor ops)
                 gpu         GPU leases for concurrent jobs
  ensemble       ensemble    OOF predictions combined and scored; blend: the methods, with honest CV
                 metrics     the competition metrics, which tasks each suits
                 thresholds  per-label thresholds and ordinal cut points fitted on OOF, honestly nested
  submission     submission  a submission with exactly sample_submission.csv's ids, order and columns
  submit         kaggle_steps  submit, wait for the score, leaderboard.csv
                 kaggle_code   code competitions: dataset upload, kernel push and run, code submission
  kernel         kernel      the kernel dataset and notebook; `run`, the notebook itself (uses predict)
  report         report      the Snakemake report's figures
  predict        predict     a finished run's ensemble on new images (also the kernel's prediction)
  tracking       tracking    guarded MLflow logging, with each job's record of what it logged; backfill
                             replays those records into MLflow when the server was down
  (everywhere)   fsutil      atomic, durable writes; errors: the one exception type for bad input
"""

__version__ = "0.1.0"
