"""The reports a trader reads: the morning's (``daily``), the week's (``weekly``) and the last
retrain's (``retrain``), built from the stores (:mod:`turbomode.reports.build`), rendered as
plain text and HTML, and delivered by SMTP, to a webhook, or into the data directory
(:mod:`turbomode.reports.deliver`). ``turbomode report`` and the report CronWorkflows are thin
adapters over these two modules. :mod:`turbomode.reports.performance` holds the figures of the
dashboard's performance pages (the service's ``/performance/*`` routes are adapters over it).
"""

from turbomode.reports.build import Report, build_report
from turbomode.reports.deliver import Delivery, deliver

__all__ = ["Delivery", "Report", "build_report", "deliver"]
