"""Demo data hook: install the shipped playbooks (inactive) so the demo shows them."""

from __future__ import annotations


def after_seed_demo(*, stdout) -> None:
    from clm.automation.playbooks import playbooks_install

    created = playbooks_install()
    stdout.write(f"Playbooks installed (inactive): {len(created)}")
