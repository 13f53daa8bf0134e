"""Targeting: how well a token-credit rule puts a wrong rollout's blame on its labelled mistakes.

``ktae targeting`` (:mod:`ktae.targeting.cli`) scores the rules of :data:`ktae.targeting.rules.RULES` on the corpora of
:mod:`ktae.targeting.corpus`.
"""
