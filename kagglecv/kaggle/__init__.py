"""Kaggle through the official `kaggle` client, each module with public functions:

  client       credentials, one call with retries and timeouts, one poll until a deadline, KaggleError
  download     a competition's files, downloaded once and unpacked safely
  submit       file submissions: submit, wait for the public score, the message
  leaderboard  leaderboard.csv, one row per submission
  code         code competitions: is it one, and the code submission (dataset, kernel run, submit, score)
  kernel_run   the kernel on Kaggle: the dataset uploaded, the kernel pushed, its run polled, its log fetched
  kernel       the kernel builder: the notebook and the dataset it needs, built from a finished run
  kernel_dataset  what the dataset holds: models, the ensemble or the student, the wheel, factory sources
  notebook     the notebook itself: what runs on Kaggle, on the hidden test set
  rerun        the hidden rerun: projected time, tested versions, dataset and disk checks, progress
The command line: `kagglecv download|submit` (kagglecv.cli).

Credentials never pass through here: the client finds them itself (kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY,
KAGGLE_API_TOKEN), and everything it says is redacted (kagglecv.core.secrets).
"""
