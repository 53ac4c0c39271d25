"""`clm analytics_refresh [--as-of YYYY-MM-DD]`: refit the models and rewrite every score."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date

from clm.analytics.models import RefreshRun
from clm.analytics.services import refresh_now
from clm.core.errors import DomainError


class Command(BaseCommand):
    help = "Refresh RFM, CLV, P(alive), churn risk and health as of a date (default today)."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", dest="as_of", help="YYYY-MM-DD; purchases after it are ignored")
        parser.add_argument("--rebuild-summaries", action="store_true",
                            help="first recompute the per-contact purchase summaries and active "
                                 "months from all transactions and events (a repair: writes "
                                 "through the services keep them current)")

    def handle(self, *args, as_of=None, rebuild_summaries=False, **options):
        if rebuild_summaries:
            from django.db import transaction

            from clm.analytics import summary

            with transaction.atomic():
                buyers = summary.summaries_rebuild()
                summary.activity_months_rebuild()
            self.stdout.write(f"Rebuilt the purchase summaries of {buyers} customers.")
        day = None
        if as_of:
            day = parse_date(as_of)
            if day is None:
                raise CommandError(f"--as-of: '{as_of}' is not a date (YYYY-MM-DD).")
        try:
            run = refresh_now(as_of=day)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        if run.status != RefreshRun.Status.DONE:
            raise CommandError(f"Refresh failed: {run.failure}")
        bg, gg = run.bgnbd, run.gamma_gamma
        self.stdout.write(f"Refreshed as of {run.as_of}: {run.customer_count} customers, "
                          f"{run.contact_count} contacts scored in {run.timings.get('total')} s.")
        if bg:
            self.stdout.write(f"BG/NBD ({bg['time_unit']}): r={bg['r']:.4g} alpha={bg['alpha']:.4g} "
                              f"a={bg['a']:.4g} b={bg['b']:.4g} LL={bg['log_likelihood']:.1f}")
        if gg:
            self.stdout.write(f"Gamma-Gamma: p={gg['p']:.4g} q={gg['q']:.4g} gamma={gg['gamma']:.4g}")
        for error in run.diagnostics.get("errors", []):
            self.stdout.write(self.style.WARNING(error))
