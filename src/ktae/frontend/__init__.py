"""The layer every front-end calls (``ktae train``, ``ktae analyze``, the verl plug-in, the TRL trainer).

One place for what the front-ends share, so that each of them only translates its own data structures:

- :mod:`ktae.frontend.options`: KTAE options from any source (a dict, a Hydra/OmegaConf node, prefixed
  dataclass fields, ``KEY=VALUE`` text) to a :class:`~ktae.KTAEConfig`, with one validation and one error style;
  the estimator names every front-end accepts (``grpo+ktae``, ``grpo_ktae``, ``ktae``, ...);
- :mod:`ktae.frontend.outcomes`: is a rollout correct, the count of mixed groups, verdicts read from files;
- :mod:`ktae.frontend.metrics`: the key-token metrics (``ktae/abs_mean``, ``ktae/mixed_group_fraction``, ...),
  and the names older runs logged them under;
- :mod:`ktae.frontend.records`: the rollout record and the key-token dump writer (``step_<step>.jsonl``).
"""
