"""``python -m ktae.integrations.verl_cpu``: the CPU settings as Hydra overrides, for the plain ``main_ppo`` route::

    VERL_USE_EXTERNAL_MODULES=ktae.integrations.verl_cpu python -m verl.trainer.main_ppo \\
        $(python -m ktae.integrations.verl_cpu) <your overrides>
"""
from ktae.integrations.verl_cpu import hydra_overrides

print(" ".join(hydra_overrides()))
