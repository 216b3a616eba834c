"""Kaggle through the official `kaggle` client, each module with public functions:

  client       credentials, one call with retries and timeouts, one poll until a deadline, KaggleError
  download     a competition's files, downloaded once and unpacked safely
  submit       file submissions: submit, wait for the public score, the message
  leaderboard  leaderboard.csv, one row per submission
  code         code competitions: kernel dataset upload, kernel push and run, code submission
  __main__     `python -m kagglecv.kaggle download|submit` (and `kagglecv download`)

Credentials never pass through here: the client finds them itself (kaggle.json, KAGGLE_USERNAME/KAGGLE_KEY,
KAGGLE_API_TOKEN), and everything it says is redacted (kagglecv.core.secrets).
"""
