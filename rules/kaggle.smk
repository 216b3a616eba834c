# Kaggle download and submit rules (issue 3).
