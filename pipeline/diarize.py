"""Who spoke when, without a turns file: voice activity, voice embeddings, clustering.

Speech regions come from silero-vad (vad.py). Inside them, windows of 1.5 s every 0.25 s are embedded
with resemblyzer's GE2E voice encoder (its weights ship in its wheel), clustered by cosine distance with
average linkage, and the window labels become `speakers.Turn`s named SPEAKER_1, SPEAKER_2, ... in order
of first appearance, which `speakers.label` then puts on the transcript's segments.

A stereo file with one speaker per channel (a recorded call: the channels are uncorrelated and each
carries speech) is split by channel instead (calls.py): SPEAKER_1 is the left channel, SPEAKER_2 the right.

A `Diarizer` takes a file in pieces cut in silence, so a long recording is never held whole: a piece
leaves behind only its windows' embeddings, spans and region numbers (for a stereo file also its channel
turns and running channel moments) and its last 1.7 s, read again before the next piece so that windows
near a cut see what they would in the whole file. `finish()` clusters every window at once, so a voice
keeps its name across pieces; `diarize()` feeds a whole decoded file as one piece.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
import numpy as np

from .audio import SAMPLE_RATE, Audio, load_channels
from .calls import MAX_CORRELATION, CallStats, channel_turns, speech_for_turns as _speech, turn as _turn
from .errors import EarmarkError
from .speakers import Turn
from .vad import Region

log = logging.getLogger(__name__)

FRAME = 160  # samples per mel frame of the voice encoder (10 ms)
MAX_WINDOWS = 4000  # an hour of speech is then embedded every 0.9 s
# Past this many windows `cluster` clusters an evenly spread subset and gives the others the nearest
# speaker: average linkage holds every pairwise distance (and sklearn copies), so memory would grow
# with a file's length up to MAX_WINDOWS. eval measured ingest peak RSS 1440 MiB for a 10-minute
# archive (~1900 windows) and 1786 for a 60-minute one (4000); 2000 keeps both in the same regime.
MAX_CLUSTERED = 2000
GRID = 2560  # samples: a whole number of silero-vad chunks (512 samples) and of mel frames (FRAME)


class DiarizationError(EarmarkError):
    """Speaker diarization could not run (encoder missing, impossible speaker-count bounds)."""


@dataclass(frozen=True)
class DiarizeOptions:
    num_speakers: int | None = None  # exactly this many speakers, when the user knows
    min_speakers: int = 1
    max_speakers: int | None = None
    # 1.5 s is about what the encoder was trained on (1.6 s partials); a short hop places changes to 0.25 s.
    window: float = 1.5
    hop: float = 0.25
    # Cosine distance (average linkage) above which two clusters are different voices. GE2E gives
    # ≈0.05 between whole utterances of one voice and ≈0.33 between two (MODELS.md); 1.5 s windows of
    # one voice lie ≈0.2-0.29 apart on average (single-speaker recordings: LibriSpeech, LibriVox, JFK,
    # OSR Harvard), so the cut sits at the different-voice figure, just above that spread.
    threshold: float = 0.3
    # Labels are smoothed by a majority vote over this many neighbouring windows (1.25 s).
    smooth: int = 5
    # A cluster with less speech than this is folded into its nearest neighbour: a voice heard for
    # under 2 s cannot be told from a noisy window, and over-splitting one speaker is the worse error.
    min_speaker_seconds: float = 2.0
    # A stereo file whose channels correlate less than this is taken as one speaker per channel.
    max_channel_correlation: float = MAX_CORRELATION

    def check(self) -> None:
        """Raise DiarizationError if the speaker-count bounds cannot be met."""
        lo, hi, n = self.min_speakers, self.max_speakers, self.num_speakers
        top = hi if hi is not None else float("inf")
        if lo < 1 or top < lo or n is not None and not lo <= n <= top:
            raise DiarizationError(f"impossible speaker counts: --num-speakers {n}, --min-speakers {lo}, "
                                   f"--max-speakers {hi} (need 1 <= min <= num <= max)")

    @property
    def by_channel(self) -> bool:
        """Whether a two-channel file may be split by channel: only if two speakers are allowed."""
        return self.num_speakers in (None, 2)


def diarize(audio: Audio, options: DiarizeOptions = DiarizeOptions()) -> list[Turn]:
    """Speaker turns of a whole decoded recording: by channel for a two-channel call, else by voice."""
    channels = load_channels(audio.path) if audio.path.is_file() and options.by_channel else None
    diarizer = Diarizer(options, channels=1 if channels is None else len(channels))
    diarizer.feed(0, audio.samples, channels)
    return diarizer.finish()


class Diarizer:
    """Speaker turns of a file fed piece by piece, in order, each piece ending in silence."""

    def __init__(self, options: DiarizeOptions = DiarizeOptions(), total_samples: int | None = None,
                 channels: int = 1):
        """`total_samples` (the file's length, say from ffprobe) fixes the window hop before the first
        piece; without it the first piece's speech does, which is exact for a whole file fed at once.
        `channels` is 2 for a stereo file, whose feed() then gets both channels, to tell a call with one
        speaker per channel."""
        options.check()
        self.options = options
        self._hop = None if total_samples is None else _hop(options, total_samples)
        self._call = CallStats(options.max_channel_correlation) if channels == 2 and options.by_channel else None
        self._call_turns: list[Turn] = []
        self._vectors: list[np.ndarray] = []
        self._spans: list[tuple[int, int]] = []  # on the file's timeline
        self._groups: list[int] = []  # each window's speech region, numbered across pieces
        self._regions = 0
        self._lead = int(options.window * SAMPLE_RATE)  # samples of what came before read with a piece
        self._tail = np.zeros(0, dtype=np.float32)  # the last samples so far, to lead the next piece
        self._next = 0  # where the next piece starts

    def feed(self, start: int, samples: np.ndarray, channels: np.ndarray | None = None) -> None:
        """Take the next piece: 16 kHz mono `samples` starting at sample `start` of the file and, for a
        stereo file, the same piece's (2, n) `channels`."""
        if start != self._next:
            raise ValueError(f"pieces come back to back: the next one starts at sample {self._next}, not {start}")
        if self._call is not None and channels is None:
            raise ValueError("a Diarizer made with channels=2 needs each piece's channels")
        self._next = start + len(samples)
        # Whether a stereo file is a call is known only at finish(), so both kinds of turns are kept.
        if self._call is not None:
            self._call.add_moments(channels)
            self._call.add_speech(channels)
            self._call_turns += channel_turns(channels, offset=start)
        self._feed_voice(start, samples)

    def finish(self) -> list[Turn]:
        """The turns of the whole file on its timeline: by channel for a call, else by clustered voice."""
        if self._call is not None and self._call.is_split():
            log.info("one speaker per channel")
            return self._call_turns
        if not self._vectors:
            return []
        seconds = np.array([(b - a) / SAMPLE_RATE for a, b in self._spans])
        labels = cluster(np.concatenate(self._vectors), seconds, self.options)
        return _turns(self._spans, smooth(labels, self._groups, self.options.smooth))

    def _feed_voice(self, start: int, samples: np.ndarray) -> None:
        """Embed the windows of the piece that starts at sample `start`."""
        # The piece is read after a lead of about a window of what came before, from a multiple of GRID:
        # a window centred on a short region near its start reaches back into the lead as it would in
        # the whole file, and VAD and mel frames fall where a whole-file pass puts them.
        first = max(0, (start - self._lead) // GRID * GRID)
        lead = start - first
        if lead:
            samples = np.concatenate([self._tail[len(self._tail) - lead:], samples])
        self._tail = samples[-(self._lead + GRID):].copy()  # a copy: a view would keep the piece alive
        regions = _speech(samples, lead)
        if self._hop is None:  # the first piece (the whole file, fed at once): its speech sets the hop
            self._hop = _hop(self.options, sum(r.end - r.start for r in regions))
        windows = _windows(regions, len(samples), self.options, self._hop)
        if windows:
            self._vectors.append(embed_windows(samples, windows, self.options))
            self._spans += [(first + a, first + b) for a, b in _spans(regions, windows)]
            self._groups += [self._regions + i for i, _, _ in windows]
        self._regions += len(regions)


# ---------------------------------------------------------------- by voice

def _hop(options: DiarizeOptions, speech_samples: int) -> int:
    """Samples between window starts. Clustering holds every pair of windows in memory: past
    MAX_WINDOWS over `speech_samples` (or an upper bound on it), windows step further apart."""
    return max(int(options.hop * SAMPLE_RATE), speech_samples // MAX_WINDOWS)


def _windows(regions: list[Region], n_samples: int, options: DiarizeOptions,
             hop: int) -> list[tuple[int, int, int]]:
    """(region index, first sample, end sample) of every embedding window, in time order.

    A region shorter than a window gets one window centred on it (with a little of its surroundings),
    so that every stretch of speech has a label."""
    size = int(options.window * SAMPLE_RATE)
    out = []
    for i, r in enumerate(regions):
        if r.end - r.start <= size:
            start = min(max(0, (r.start + r.end - size) // 2), max(0, n_samples - size))
            out.append((i, start, min(n_samples, start + size)))
            continue
        starts = list(range(r.start, r.end - size + 1, hop))
        if starts[-1] + size < r.end:  # the region's tail gets a window of its own
            starts.append(r.end - size)
        out += [(i, s, s + size) for s in starts]
    return out


def _spans(regions: list[Region], windows: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """The stretch of speech each window labels: its region cut at the midpoints between window centres."""
    centres_of: dict[int, list[int]] = {}
    for i, s, e in windows:
        centres_of.setdefault(i, []).append((s + e) // 2)
    spans = []
    for i, r in enumerate(regions):
        centres = centres_of[i]
        cuts = [r.start] + [(a + b) // 2 for a, b in zip(centres, centres[1:])] + [r.end]
        spans += list(zip(cuts, cuts[1:]))
    return spans


@functools.lru_cache(maxsize=1)
def _encoder():
    try:
        from resemblyzer import VoiceEncoder
    except ImportError as e:  # installed with --no-deps by scripts/setup.sh (see pyproject.toml)
        raise DiarizationError("speaker diarization needs resemblyzer: run scripts/setup.sh, or "
                               "`pip install --no-deps resemblyzer==0.1.4 webrtcvad-wheels librosa`; "
                               "or ingest with --no-diarize") from e
    return VoiceEncoder("cpu", verbose=False)


def embed_windows(samples: np.ndarray, windows: list[tuple[int, int, int]],
                  options: DiarizeOptions = DiarizeOptions(), batch: int = 256) -> np.ndarray:
    """One L2-normalised 256-d voice embedding per window, shape (len(windows), 256)."""
    import torch

    encoder = _encoder()
    samples = np.asarray(samples, dtype=np.float32)
    mel = _mel(samples)
    frames = int(options.window * SAMPLE_RATE) // FRAME
    out = []
    for first in range(0, len(windows), batch):
        part = windows[first:first + batch]
        x = np.zeros((len(part), frames, mel.shape[1]), dtype=np.float32)
        for k, (_, start, end) in enumerate(part):
            piece = mel[start // FRAME: start // FRAME + frames]
            x[k, :len(piece)] = piece * _gain(samples[start:end]) ** 2  # power mels scale with gain²
        with torch.no_grad():
            out.append(encoder(torch.from_numpy(x)).numpy())
    return np.concatenate(out)


def _mel(samples: np.ndarray, minute: int = 60 * SAMPLE_RATE) -> np.ndarray:
    """The encoder's mel frames (10 ms) of a piece, computed a minute at a time: an STFT of an hour
    in one go would hold ~600 MB."""
    return np.concatenate([_mel_frames(samples[i:i + minute])[:minute // FRAME]
                           for i in range(0, len(samples), minute)])


MEL_FFT = 400  # resemblyzer's mel analysis: 25 ms windows every 10 ms (FRAME), 40 bands
MEL_BANDS = 40
_MEM_BLOCK = 2 ** 18  # bytes of frames per FFT call, as librosa.util.MAX_MEM_BLOCK


def _mel_frames(y: np.ndarray) -> np.ndarray:
    """resemblyzer's `wav_to_mel_spectrogram` (power mels, frames x 40) without librosa, to the bit:
    librosa's STFT (centred, zero-padded, Hann) and Slaney mel filters, step for step and in the same
    blocks. librosa would compile its numba functions on first use, in the middle of ingesting a
    file: ~240 MB of resident LLVM state and code that every later piece's peak then sat on top of."""
    from scipy.signal import get_window

    n_fft, hop, half = MEL_FFT, FRAME, MEL_FFT // 2
    window = get_window("hann", n_fft, fftbins=True)[:, None]
    frame = lambda x: np.lib.stride_tricks.as_strided(  # noqa: E731  (n_fft, frames), librosa.util.frame
        x, shape=(n_fft, 1 + (len(x) - n_fft) // hop), strides=(x.strides[0], hop * x.strides[0]), writeable=False)
    start_k = int(np.ceil(half / hop))  # frames that reach into the head padding
    tail_k = (len(y) + half - n_fft) // hop + 1  # the first frame that reaches into the tail padding
    if tail_k <= start_k:
        y, start, pre, post = np.pad(y, (half, half)), 0, None, None
    else:
        start = start_k * hop - half
        pre = frame(np.pad(y[:(start_k - 1) * hop - half + n_fft + 1], (half, 0)))[:, :start_k]
        post = frame(np.pad(y[tail_k * hop - half:], (0, half))) \
            if tail_k * hop - half + n_fft <= len(y) + half else pre[:, :0]
    frames = frame(y[start:])
    extra = 0 if pre is None else pre.shape[1] + post.shape[1]
    stft = np.zeros((1 + n_fft // 2, frames.shape[1] + extra), dtype=np.complex64, order="F")
    first = 0
    if pre is not None:
        first = pre.shape[1]
        stft[:, :first] = np.fft.rfft(window * pre, axis=-2)
        if post.shape[1]:
            stft[:, -post.shape[1]:] = np.fft.rfft(window * post, axis=-2)
    columns = max(1, _MEM_BLOCK // (n_fft * frames.itemsize))
    for a in range(0, frames.shape[1], columns):
        b = min(a + columns, frames.shape[1])
        stft[:, a + first:b + first] = np.fft.rfft(window * frames[:, a:b], axis=-2)
    power = np.abs(stft) ** 2.0
    return np.einsum("...ft,mf->...mt", power, _mel_basis(), optimize=True).astype(np.float32).T


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=400, n_mels=40): Slaney mel scale and area norm, float32."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(hz: float) -> float:
        return hz / f_sp if hz < min_log_hz else min_log_mel + np.log(np.asanyarray(hz) / min_log_hz) / logstep

    mels = np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), MEL_BANDS + 2)
    mel_f = 0.0 + f_sp * mels
    log_t = mels >= min_log_mel
    mel_f[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, np.fft.rfftfreq(n=MEL_FFT, d=1.0 / SAMPLE_RATE))
    weights = np.zeros((MEL_BANDS, 1 + MEL_FFT // 2), dtype=np.float32)
    for i in range(MEL_BANDS):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (mel_f[2:MEL_BANDS + 2] - mel_f[:MEL_BANDS]))[:, np.newaxis]
    return weights


def _gain(window: np.ndarray, target_dbfs: float = -30.0) -> float:
    """The gain that brings a window to -30 dBFS RMS. The encoder reads power (not log) mels and was
    trained on utterances normalised to that level; without it a loud and a quiet stretch of one
    voice (an emphatic phrase, a speaker nearer the microphone) look like two voices."""
    rms = float(np.sqrt(np.mean(np.square(window, dtype=np.float64)))) if len(window) else 0.0
    if rms < 1e-5:  # digital silence: leave it silent rather than amplify dither
        return 1.0
    return 10 ** ((target_dbfs - 20 * np.log10(rms)) / 20)


def cluster(vectors: np.ndarray, seconds: np.ndarray, options: DiarizeOptions = DiarizeOptions(),
            limit: int = MAX_CLUSTERED) -> np.ndarray:
    """A speaker index per embedding: agglomerative clustering (cosine, average linkage) cut at
    `options.threshold`, tiny clusters folded into their neighbours, count kept within the bounds.
    Past `limit` embeddings, an evenly spread subset is clustered and the others join the speaker
    whose centroid is nearest, so that memory stays bounded."""
    step = -(-len(vectors) // limit)
    if step > 1:
        labels = cluster(vectors[::step], seconds[::step] * step, options, limit)
        speakers = np.unique(labels)
        return speakers[np.argmax(vectors @ _centroids(vectors[::step], labels, speakers).T, axis=1)]
    n = len(vectors)
    if n < 2:
        return np.zeros(n, dtype=int)
    if options.num_speakers is not None:
        return _agglomerate(vectors, n_clusters=min(options.num_speakers, n))
    labels = _fold_small(vectors, _agglomerate(vectors, threshold=options.threshold), seconds,
                         options.min_speaker_seconds)
    k = len(set(labels))
    lo = min(options.min_speakers, n)
    hi = min(options.max_speakers or n, n)
    if k < lo or k > hi:
        labels = _agglomerate(vectors, n_clusters=min(max(k, lo), hi))
    return labels


def _agglomerate(vectors: np.ndarray, threshold: float | None = None, n_clusters: int | None = None) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=n_clusters, distance_threshold=threshold,
                                    metric="cosine", linkage="average")
    return model.fit_predict(vectors)


def _fold_small(vectors: np.ndarray, labels: np.ndarray, seconds: np.ndarray, min_seconds: float) -> np.ndarray:
    """Give the windows of clusters with less than `min_seconds` of speech to the nearest large cluster."""
    sizes = {c: float(seconds[labels == c].sum()) for c in set(labels)}
    large = [c for c, s in sizes.items() if s >= min_seconds] or [max(sizes, key=sizes.get)]
    centroids = _centroids(vectors, labels, large)
    out = labels.copy()
    for k in np.flatnonzero(~np.isin(labels, large)):
        out[k] = large[int(np.argmax(centroids @ vectors[k]))]
    return out


def _centroids(vectors: np.ndarray, labels: np.ndarray, clusters) -> np.ndarray:
    """The unit-length mean vector of each of `clusters`, one row each."""
    centroids = np.stack([vectors[labels == c].mean(axis=0) for c in clusters])
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def smooth(labels: np.ndarray, groups: list[int], width: int) -> np.ndarray:
    """Majority vote over `width` neighbouring windows of the same speech region (a median filter for
    labels): a lone window of another voice in the middle of a turn is noise more often than not."""
    out = labels.copy()
    half = width // 2
    for k in range(len(labels)):
        lo, hi = k, k
        while lo > 0 and k - lo < half and groups[lo - 1] == groups[k]:
            lo -= 1
        while hi < len(labels) - 1 and hi - k < half and groups[hi + 1] == groups[k]:
            hi += 1
        votes = np.bincount(labels[lo:hi + 1])
        if votes[labels[k]] < votes.max():
            out[k] = int(np.argmax(votes))
    return out


def _turns(spans: list[tuple[int, int]], labels: np.ndarray) -> list[Turn]:
    """Join touching spans of one speaker into turns, naming speakers SPEAKER_1, SPEAKER_2, ... in
    order of first appearance."""
    pieces: list[list[int]] = []
    for (a, b), lab in zip(spans, labels):
        if pieces and pieces[-1][2] == lab and pieces[-1][1] >= a:
            pieces[-1][1] = b
        else:
            pieces.append([a, b, int(lab)])
    names: dict[int, str] = {}
    turns = []
    for a, b, lab in pieces:
        names.setdefault(lab, f"SPEAKER_{len(names) + 1}")
        turns.append(_turn(a, b, names[lab]))
    return turns


def count(turns: list[Turn]) -> int:
    """How many speakers the turns name."""
    return len({t.speaker for t in turns})
