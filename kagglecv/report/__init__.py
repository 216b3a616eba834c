"""Figures and tables for the Snakemake report (`snakemake --report results/<competition>/report.html`).

Every function reads the workflow's own files and writes one PNG (matplotlib's Agg canvas, no pyplot state)
or one HTML file, atomically. The report rules (rules/report.smk) are part of the default run, so the report
of a finished run needs no further computation; `targets` lists the files they make.

  tables        cv_table: scores.json (+ ensemble_oof.csv): backbone x fold and every ensemble method, as PNG and HTML
  curves        training_curves: history.csv of every (backbone, fold) job: losses and the validation metric per epoch
                job_time: metrics.json of every training job: start-up, epochs, TTA and the rest (its fixed cost)
                lr_find_curves: lr_find.json of each backbone: smoothed loss against learning rate, with the suggestion
  oof           confusion: ensemble_oof.csv: the ensemble's out-of-fold confusion matrix
  folds         class_balance: folds.csv: class counts per fold
                oof_errors: ensemble_oof.csv + the image cache: the most confidently wrong and the most uncertain images
  tuning        a study's history and parameter importances (kagglecv.tuning)
  leaderboard   leaderboard.csv: CV and public score of every submission
"""
