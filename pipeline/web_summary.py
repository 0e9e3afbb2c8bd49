"""`earmark serve`'s summary routes: GET a recording's cited summary and chapters, POST to make one.

Summaries are made on a worker of their own, one recording at a time; each of its model calls takes the
model between two asks, so a question waits for one chapter's call, not for a whole summary.
"""

from __future__ import annotations

import logging

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from .errors import EarmarkError
from .web_state import RecordingId, ServerState, State, api_router, recording_or_404

log = logging.getLogger(__name__)

router = api_router()


@router.get("/recordings/{rid}/summary", responses={202: {"description": "being made"}})
def summary(st: State, rid: RecordingId):
    """The recording's cited summary and chapters (as `earmark summary --json`, with "status": "done")
    if one was made from its transcript as it is now; else 202 while one is being made, 404 if none.

    A page polls this while a summary is made: that answer (202) is given before anything is read, so
    a poll never digests the transcript to find the kept summary out of date (`summary.current`)."""
    from .summary import current

    def run(lib, _):
        recording_or_404(lib, rid)
        return None if st.summaries.get(rid) == "making" else current(lib, rid)
    kept = st.reader.call(run)
    if kept is not None:
        return {"status": "done", **kept.to_json()}
    state = st.summaries.get(rid)
    if state == "making":
        return JSONResponse({"status": "making"}, status_code=202)
    raise HTTPException(404, f"no summary of this recording: {state}" if state else
                        "no summary of this recording yet: POST to this address to make one")


@router.post("/recordings/{rid}/summary", status_code=202)
def make_summary(st: State, rid: RecordingId) -> dict:
    """Start making the recording's summary and chapters (GET the same address for it); one recording at
    a time: while another's is being made, 503 with Retry-After."""
    st.reader.call(lambda lib, _: recording_or_404(lib, rid))
    with st.summaries_lock:  # (two POSTs at once start one summary)
        making = [r for r, s in st.summaries.items() if s == "making"]
        if making and rid not in making:
            raise HTTPException(503, "a summary of another recording is being made; retry when it is done",
                                headers={"Retry-After": "30"})
        if not making:
            st.summaries[rid] = "making"
            st.summarizer.submit(lambda lib, emb: _summarize(st, lib, emb, rid))
    return {"status": "making"}


def _summarize(st: ServerState, lib, emb, rid: str) -> None:
    from .config import SummaryOptions
    from .summary import summarize

    try:
        summarize(lib, emb, rid, SummaryOptions())
        st.summaries.pop(rid, None)
    except Exception as e:  # (told to the page through GET; the traceback goes to the log)
        log.exception("summary of %s failed", rid[:12])
        st.summaries[rid] = str(e) if isinstance(e, EarmarkError) else f"unexpected {type(e).__name__}: {e}"
