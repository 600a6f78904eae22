"""Notifications: the monitor's state changes, and a long job's progress, by e-mail and HTTP POST.

    Notifier(settings, section, renotify=, state_path=)   observe(results) -> messages queued; close()
    ProgressNotifier(settings, section, job, table)       start(total), advance(done), finish(state)

    message.py   Message: the JSON body, the e-mail subject and text (pure)
    routing.py   who hears about which check (routes, mail_to, http_url; pure)
    notifier.py  which results are news: changes, recoveries, renotify; per recipient, in the state file
    state.py     the SQLite state file that survives a restart
    delivery.py  the background thread: attempts, backoff, `notify_sent` / `notify_failed`
    channels.py  SMTP (STARTTLS, login from the secret file or $SCRAPERD_SMTP_PASSWORD) and HTTP POST
    progress.py  ProgressNotifier: running, every progress_every %, completed / failed / aborted

Events: notify_sent (channel, recipient, check, state, previous_state, key); notify_failed (channel,
recipient, check, state, attempt, attempts, error, action: "retrying in Ns", "gave up", "abandoned");
notify_recipients_dropped (a routed recipient whose channel `notify` does not name). Delivery never
blocks the caller and never raises into it. The SMTP password never appears in a log, an error or a
message. Not here: what is checked (monitor/), and the wording of a check's summary.
"""

from scraperd.notify.channels import CAFILE_ENV, PASSWORD_ENV
from scraperd.notify.message import Message
from scraperd.notify.notifier import Notifier
from scraperd.notify.progress import ProgressNotifier, for_job
from scraperd.notify.routing import recipients

__all__ = ["CAFILE_ENV", "PASSWORD_ENV", "Message", "Notifier", "ProgressNotifier", "for_job", "recipients"]
