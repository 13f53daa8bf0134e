"""Targeting: how well a token-credit rule puts a wrong rollout's blame on its labelled mistakes (``ktae targeting``)."""
