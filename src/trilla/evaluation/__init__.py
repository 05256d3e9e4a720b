"""After training: evaluate, report, compare, explain, review (fastai-style: predict once, ask many), the leaderboard."""
