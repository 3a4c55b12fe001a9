"""Progressive delivery: the statistics of a canary judgement, the judgement itself, and the
stage loop of deploy step 6."""
