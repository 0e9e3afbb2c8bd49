"""Decoding any format ffmpeg reads, identity by original bytes, clear errors for non-audio."""

import hashlib
import subprocess

import numpy as np
import pytest
import soundfile as sf

from pipeline import audio
from pipeline.errors import AudioError

from .conftest import SAMPLES

JFK = SAMPLES / "jfk-inaugural-1961-excerpt.flac"


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def test_flac_decodes_to_16k_mono_with_hash_of_original_bytes():
    a = audio.load(JFK)
    assert a.samples.dtype.name == "float32" and a.samples.ndim == 1
    assert a.duration == pytest.approx(11.0, abs=0.05)
    assert a.sha256 == hashlib.sha256(JFK.read_bytes()).hexdigest()
    assert 0.05 < abs(a.samples).max() <= 1.0


@pytest.mark.parametrize("ext,args", [
    ("mp3", ["-c:a", "libmp3lame"]), ("m4a", ["-c:a", "aac"]), ("ogg", ["-c:a", "libvorbis"]),
    ("opus", ["-c:a", "libopus"]), ("wav", []),
])
def test_common_formats_decode(tmp_path, ext, args):
    out = tmp_path / f"jfk.{ext}"
    _ffmpeg("-i", JFK, *args, out)
    a = audio.load(out)
    assert a.duration == pytest.approx(11.0, abs=0.1)
    # Identity is the file's own bytes, so a transcode is a different recording.
    assert a.sha256 == hashlib.sha256(out.read_bytes()).hexdigest() != audio.sha256_file(JFK)


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_audio_track_of_video_decodes(tmp_path, ext):
    out = tmp_path / f"talk.{ext}"
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:d=11", "-i", JFK, "-shortest", "-c:a", "aac", out)
    assert audio.load(out).duration == pytest.approx(11.0, abs=0.2)


def test_empty_file_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: empty file"):
        audio.load(empty)


def test_text_renamed_mp3_is_a_clear_error(tmp_path):
    fake = tmp_path / "notes.mp3"
    fake.write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.mp3: not decodable audio"):
        audio.load(fake)


def test_stream_gives_a_files_samples_in_blocks(tmp_path):
    # A 16 kHz mono 16-bit wav needs no resampling: ffmpeg's stream must hand back its samples exactly,
    # as soundfile (an independent decoder) wrote them, cut into blocks on the file's timeline.
    pcm = np.random.default_rng(0).integers(-20000, 20000, 7 * 16000 + 123, dtype=np.int16)
    wav = tmp_path / "noise.wav"
    sf.write(wav, pcm, 16000, subtype="PCM_16")
    blocks = list(audio.stream(wav, block_seconds=3))
    assert [b.start for b in blocks] == [0, 48000, 96000]
    assert [len(b.samples) for b in blocks] == [48000, 48000, 16123]
    assert np.array_equal(np.concatenate([b.samples for b in blocks]), pcm.astype(np.float32) / 32768.0)
    assert blocks[0].channels is None


def test_stream_carries_both_channels_of_a_stereo_file():
    blocks = list(audio.stream(JFK, block_seconds=3))
    assert [b.start for b in blocks] == [0, 48000, 96000, 144000]
    # The JFK flac is two-channel: the channels come along, and the mono mix is their mean.
    assert blocks[0].channels.shape == (2, 48000)
    assert np.allclose(blocks[0].channels.mean(axis=0), blocks[0].samples)


def test_stream_of_a_broken_file_is_a_clear_error(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("not audio\n" * 100)
    with pytest.raises(AudioError, match="notes.wav: not decodable audio"):
        list(audio.stream(fake))


@pytest.mark.parametrize("tags, expected", [
    ({"creation_time": "2021-06-03T10:15:00.000000Z"}, ("2021-06-03T10:15:00+00:00", "creation_time")),
    # An iPhone's local recording time wins over the container's UTC encoding time.
    ({"com.apple.quicktime.creationdate": "2023-05-01T10:00:00+0200", "creation_time": "2023-05-01T08:00:05Z"},
     ("2023-05-01T10:00:00+02:00", "com.apple.quicktime.creationdate")),
    ({"origination_date": "2019-04-02", "origination_time": "13:45:10"}, ("2019-04-02T13:45:10", "origination_date")),
    ({"date": "1961"}, ("1961", "date")),  # only as precise as the tag: no invented month or day
    ({"date": "2019:04:02 10:11:12"}, ("2019-04-02T10:11:12", "date")),
    ({"date": "0000-00-00"}, None), ({"date": "2019-13-01"}, None), ({"date": "last week"}, None), ({}, None),
])
def test_recording_date_is_read_from_the_tags_that_hold_it(tags, expected):
    from pipeline.audio import recording_date

    assert recording_date(tags) == expected
