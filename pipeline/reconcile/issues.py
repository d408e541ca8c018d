"""Issues, one by one or a search page at a time: read from Jira, compared with what JSync holds, and what JSync lacks
fed; an issue Jira says is deleted, hidden or unreadable is recorded on the job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.attachments import AskCopies, missing
from pipeline.ids import Order
from pipeline.jiratime import epoch_ms
from pipeline.reconcile.failures import fatal_or_retry, guarded, retryable
from pipeline.reconcile.feed import Feed
from pipeline.reconcile.jira import IssueGone, IssueHidden, JiraClient, JiraError, cut_collections
from pipeline.reconcile.jobs import JobRecord, SyncIssue, SyncIssueError
from pipeline.reconcile.rebuild import Lookup, RebuiltEvent, rebuild
from pipeline.records import LatestState, as_latest
from pipeline.snapshot import issue_document
from pipeline.store import Store, pending_key


class Issues:
    """Reconciles issues for one step of a job."""

    def __init__(
        self,
        store: Store,
        jira: JiraClient,
        feed: Feed,
        now_ms: Callable[[], int],
        ask_copies: AskCopies | None = None,
    ) -> None:
        self.store = store
        self.ask_copies = ask_copies
        self.jira = jira
        self.feed = feed
        self.now_ms = now_ms
        self.lookup = Lookup(jira.lookup)
        # Issues Jira refused in this step: they stay pending however full the job's error list is.
        self._refused: set[str] = set()

    def page(self, job: JobRecord, issues: list[dict[str, Any]]) -> None:
        """Feed what JSync lacks of a search page's issues, from the page's documents and one bulk changelog read."""
        done = set(job.resume.pending_done)
        issues = [issue for issue in issues if str(issue["id"]) not in done]
        ids = [str(issue["id"]) for issue in issues]
        if not ids:
            return
        for issue in issues:
            self._copy_attachments(str(issue["id"]), issue)
        # The search read every document before this reads their changelogs: an edit in between shows as an entry
        # newer than its document, which the rebuild leaves for the next run, never as a document ahead of its entries.
        changelogs = guarded(lambda: self.jira.bulk_changelogs(ids))
        wanted = [
            issue
            for issue in issues
            if self._needs_work(
                str(issue["id"]),
                epoch_ms((issue.get("fields") or {}).get("updated")),
                changelogs.get(str(issue["id"]), []),
            )
        ]
        cut = [str(issue["id"]) for issue in wanted if cut_collections(issue)]
        documents = {str(issue["id"]): issue for issue in wanted if str(issue["id"]) not in cut}
        documents.update(self._read_whole(job, cut, changelogs))
        for issue in wanted:
            issue_id = str(issue["id"])
            if issue_id in documents:
                self._feed_missing(job, issue_id, documents[issue_id], changelogs.get(issue_id, []))

    def reconcile(self, job: JobRecord, issue_id: str) -> bool:
        """Feed every change of one issue that JSync lacks. False if Jira refused (the issue stays pending)."""
        current = self._read_issue(job, issue_id)
        if current is None:
            return issue_id not in self._refused  # deleted or hidden is an answer; a refusal is not
        try:
            histories = self.jira.changelog(issue_id)  # after the document, for the reason `page` gives
        except (IssueGone, IssueHidden):
            return True  # gone between the two reads: the next run sees it as such
        except JiraError as exc:
            return self._issue_error(job, issue_id, exc)
        self._feed_missing(job, issue_id, current, histories)
        self._copy_attachments(issue_id, current)
        return True

    def _copy_attachments(self, issue_id: str, document: dict[str, Any]) -> None:
        """Ask for the attachments the issue has in Jira and JSync has not kept (nor skipped) yet."""
        if self.ask_copies is not None and (refs := missing(self.store, issue_id, document)):
            self.ask_copies(refs)

    def check_vanished(self, job: JobRecord, issue_id: str) -> None:
        """An issue we list that the census lacks: deleted (404), hidden from us (403), or moved on (200)."""
        try:
            found = self.jira.issue(issue_id, fields=["key", "updated", "project"], api=2)
        except IssueGone:
            self._gone(job, issue_id)
            return
        except IssueHidden:
            self._hidden(job, issue_id)
            return
        except JiraError as exc:
            self._issue_error(job, issue_id, exc)
            return
        updated = epoch_ms((found.get("fields") or {}).get("updated"))
        if not job.project and updated is not None and updated >= job.resume.bound_ms:
            # Moved to another project after the bound: this job's search (of every project) read it already,
            # and what it fed may not be captured yet, so reading it again would only feed it twice.
            return
        self.reconcile(job, issue_id)

    def _read_whole(
        self, job: JobRecord, issue_ids: list[str], changelogs: dict[str, list[dict[str, Any]]]
    ) -> dict[str, dict[str, Any]]:
        """GET issue for issues whose list (comments...) the page cut; their changelogs in `changelogs` read anew."""
        documents: dict[str, dict[str, Any]] = {}
        for issue_id in issue_ids:
            found = self._read_issue(job, issue_id)
            if found is not None:
                documents[issue_id] = found
        if documents:
            # Read after the documents, for the reason `page` gives: the earlier read came before them.
            fresh = guarded(lambda: self.jira.bulk_changelogs(list(documents)))
            changelogs.update({issue_id: fresh.get(issue_id, []) for issue_id in documents})
        return documents

    def _needs_work(self, issue_id: str, jira_updated: int | None, histories: list[dict[str, Any]]) -> bool:
        """JSync lacks the issue, a changelog entry of it, or a later edit (one without a changelog entry)."""
        latest = self.store.latest(issue_id)
        if latest is None:
            return True
        state = as_latest(latest.data)
        if state.get("deleted"):
            return False  # a deletion is final, as for webhooks
        if state.get("partial"):
            return True
        recorded = self.store.recorded_entries(issue_id)
        if "created" not in recorded or any(str(h.get("id")) not in recorded for h in histories):
            return True
        ours = epoch_ms(((state.get("issue") or {}).get("fields") or {}).get("updated"))
        return jira_updated is None or ours is None or jira_updated > ours

    def _read_issue(self, job: JobRecord, issue_id: str) -> dict[str, Any] | None:
        """The issue as a webhook shows it (REST v2), or None after recording it as deleted, hidden or failed."""
        try:
            return self.jira.issue(issue_id, api=2)
        except IssueGone:
            self._gone(job, issue_id)
        except IssueHidden:
            self._hidden(job, issue_id)
        except JiraError as exc:
            self._issue_error(job, issue_id, exc)
        return None

    def _feed_missing(
        self, job: JobRecord, issue_id: str, current: dict[str, Any], histories: list[dict[str, Any]]
    ) -> None:
        self.lookup.seed(current)
        events = rebuild(current, histories, self.lookup)
        latest = self.store.latest(issue_id)
        state = as_latest(latest.data) if latest else None
        if state and state.get("deleted"):
            return
        recorded = self.store.recorded_entries(issue_id)
        fed = [event for event in events if event.key not in recorded]
        for event in fed:
            self.feed.rebuilt(issue_id, event)
        behind = _behind(current, state, histories, recorded)
        fed_count = len(fed) + (0 if behind else self._refresh(issue_id, current, events, fed, state))
        if fed_count:
            job.changes_fed += fed_count
            job.issues_changed += 1

    def _refresh(
        self,
        issue_id: str,
        current: dict[str, Any],
        events: list[RebuiltEvent],
        fed: list[RebuiltEvent],
        state: LatestState | None,
    ) -> int:
        """An edit Jira keeps no changelog for (a comment, a field outside the changelog) still reaches latest/."""
        newest: tuple[Order, dict[str, Any] | None] | None = None
        if state is not None:
            held = state.get("issue")
            # Through issue_document too: a document stored before times were kept in UTC compares as its instants.
            held_doc = issue_document(held) if isinstance(held, dict) else None
            newest = (Order.of_state(state), held_doc)
        if fed and fed[-1] is events[-1]:
            last = events[-1]
            order = Order(last.timestamp_ms, int(last.key) if last.key.isdigit() else 0, "")
            if newest is None or order > newest[0]:
                newest = (order, issue_document(last.payload["issue"]))
        document = issue_document(current)
        if newest is not None and newest[1] == document:
            return 0
        updated = epoch_ms((current.get("fields") or {}).get("updated"))
        at = updated or self.now_ms()
        if newest is not None and at <= newest[0].time_ms:
            at = newest[0].time_ms + 1  # an edit after the newest we hold, whatever its clock says
        self.feed.refresh(issue_id, current, document, updated, at)
        return 1

    def _gone(self, job: JobRecord, issue_id: str) -> None:
        latest = self.store.latest(issue_id)
        if latest is None or latest.data.get("deleted"):
            return
        doc = latest.data.get("issue") or {"id": issue_id}
        # Jira says only that the issue is gone, not when or by whom: the deletion is dated when this job started
        # looking (just after the last change we hold, if that is later). Never the clock at this call: a retried
        # step feeds it again, and another time would be another snapshot of the same deletion.
        held = Order.of_state(latest.data).time_ms
        self.feed.deletion(issue_id, doc, max(job.resume.started_ms or self.now_ms(), held + 1))
        job.report_deleted(SyncIssue(issue_id, doc.get("key")))

    def _hidden(self, job: JobRecord, issue_id: str) -> None:
        latest = self.store.latest(issue_id)
        key = ((latest.data if latest else {}).get("issue") or {}).get("key")
        job.report_not_visible(SyncIssue(issue_id, key))

    def _issue_error(self, job: JobRecord, issue_id: str, exc: JiraError) -> bool:
        if retryable(exc) or exc.status == 401:  # not about this issue: the step or the job ends
            raise fatal_or_retry(exc)
        job.report_error(SyncIssueError(issue_id, exc.status, exc.message))
        self.store.put_json(pending_key(issue_id), {"issue_id": issue_id, "reason": f"jira_{exc.status}"})
        self._refused.add(issue_id)
        return False


def _behind(
    current: dict[str, Any], state: LatestState | None, histories: list[dict[str, Any]], recorded: set[str]
) -> bool:
    """Whether JSync holds, or is capturing, a later change than `current`, the issue as we read it.

    A refresh from `current` would then move latest/ (and git) back: the held document is later (an edit captured
    after our read), or a changelog entry already claimed is later than the held document (its capture is in
    flight, and brings its own document, so the refresh would only add a commit of its own).
    """
    held_doc = (state["issue"] if state else None) or {}
    held = epoch_ms((held_doc.get("fields") or {}).get("updated"))
    if held is None:
        return False
    read = epoch_ms((current.get("fields") or {}).get("updated"))
    if read is not None and read < held:
        return True
    return any((epoch_ms(h.get("created")) or 0) > held for h in histories if str(h.get("id")) in recorded)
