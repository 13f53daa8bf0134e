"""Recipes: the tasks and models the trainer is run on.

``arithmetic`` and ``word_problems`` are the embedded tasks (generated locally, answers known),
``tiny_model`` builds and warm-starts the tiny Llama they train, ``smollm2`` runs SmolLM2-135M on
reasoning-gym problems offline. The trainer's presets (``ktae.train.presets``) point at them.
"""
