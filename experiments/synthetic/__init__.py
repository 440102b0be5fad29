"""The synthetic study: problems with exact gradients (``problems``, ``closed_form``) and the job that
measures every estimator on them (``study``; ``python -m experiments.synthetic``)."""
