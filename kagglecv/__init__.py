"""kagglecv: reproducible Kaggle image-classification runs.

Which module serves which stage of the DAG (rules/*.smk; every rule runs scripts/job.py, which calls the job of
the same name in kagglecv.jobs; the library never imports snakemake):

  workflow-wide  jobs        every rule's job, one function per rule; the harness (log, bad input, tracking)
                 config      layering, defaults, validation; backbones merged; cache side, threads, memory
                 layout      every path under results/<competition>/, and the files of each folder, named once
                 summary     the end of a run: close the MLflow parent run, print the CV table
                 cli         the `kagglecv` command (config, predict, backfill, download)
  download       kaggle      the official kaggle client: client (credentials, retries, polling), download,
                             submit and leaderboard (file submissions), code (code competitions)
                 archive     safe unpacking of competition zips, with limits
  demo           demo        the embedded digits competition, laid out as Kaggle ships one
  prepare        prepare     read the four layouts, validate, recognise the task, write the cache and tables
                 tasks       the task kinds (binary ... ordinal): targets, head width, activation, loss scale
                 images      decode images on every core, straight to disk (one decoder, also for predict)
  folds          folds       k-fold assignment per task (stratified, multi-label, binned, grouped), once
  lr_find        lr_finder   fastai's LR range test
  train          train       one (member, fold): one-cycle, AMP, EMA, mixup, TTA, resume, a teacher's rows
                 models      a backbone entry's network: timm name or the user's factory, heads, metadata fusion
                 meta        data.meta_columns encoded on the fold's training rows only
                 recipes     progressive resizing, time budgets, weight averaging, precise batch norm
                 distributed one job on several devices (DistributedDataParallel)
                 data        batches from the memory-mapped cache (DataLoader or on-device)
                 augment     augmentation and TTA presets (albumentations and batched tensor ops)
                 gpu         GPU leases for concurrent jobs
  pseudo_labels  teachers    what pseudo-label rounds and the distilled student learn from, honestly per fold
  distill_targets
  ensemble       ensemble    OOF predictions combined and scored; blend: the methods, with honest CV
                 metrics     the competition metrics, which tasks each suits
                 decisions   a class, labels over thresholds, a grade between cut points
                 thresholds  per-label thresholds and ordinal cut points fitted on OOF, honestly nested
  submission     submission  a submission with exactly sample_submission.csv's ids, order and columns,
                             checked before it is written (the workflow's and the kernel's)
  kernel         kernel      the kernel dataset and notebook; `run`, the notebook itself (uses predict)
                 rerun       the hidden rerun: projected time, tested versions, dataset and disk checks,
                             progress (imports nothing heavy: checked before torch is imported)
  report         report      the Snakemake report's figures
  predict        predict     a finished run's ensemble on new images (also the kernel's prediction)
  tracking       tracking    guarded MLflow logging, with each job's record of what it logged; backfill
                             replays those records into MLflow when the server was down
  (everywhere)   secrets     credentials redacted from everything printed, logged or recorded
                 fsutil      atomic, durable writes; errors: the one exception type for bad input
"""

__version__ = "0.1.0"
