"""Write ``sets/real.jsonl`` and ``phrases.json`` from the question spec below and the word alignments.

Gold spans come from the source with the best times: the phone call's ``.stm`` turns ("stm:" specs),
the words aligned by ``earmark_eval.align`` ("w:" specs; for AMI they are checked to fall inside the
speaker's ``.rttm`` turn), or the whole clip ("whole") for a one-sentence file. Keeping the spec here
rather than hand-typing seconds means every gold span can be re-derived and re-checked.

Run ``python -m earmark_eval.build_sets`` after changing the spec or the alignments.
"""

from __future__ import annotations

import json
from pathlib import Path

from earmark_eval.align import find_span, load_alignment
from earmark_eval.references import EVAL_DIR, REAL_DIR, load_recordings
from earmark_eval.stitch import PHRASES_JSON
from pipeline.speakers import read_turns

SET_PATH = EVAL_DIR / "sets" / "real.jsonl"
PHONE = "pyannote-sample-phonecall-2spk.wav"
AMI = "ami-meeting-excerpt-4spk-60s.wav"
JFK = "jfk-inaugural-1961-excerpt.flac"
SONNET = "librivox-shakespeare-sonnet001-en.mp3"
SIMPL = "librivox-simplicissimus-de.mp3"
VENENO = "librivox-capitan-veneno-es.mp3"
HARVARD = "osr-harvard-list72-8k-telephone.wav"
CROC = "picovoice-leopard-diarization-3spk.wav"
LS2412 = "librispeech-2412-153948-0000.flac"
LS1995 = "librispeech-1995-1837-0001.wav"

# (file, question, answer_any, kind, gold specs, speaker). An unanswerable question names the
# recording it is adjacent to (for its lang) and has no gold.
SPEC = [
    (JFK, "What did Kennedy urge Americans to stop asking?", ["what your country can do for you"], "fact",
     ["w:ask not what your country can do for you"], None),
    (JFK, "What should his fellow Americans ask instead, according to Kennedy?",
     ["what you can do for your country"], "exact-phrase", ["w:ask what you can do for your country"], None),
    (LS1995, "What did he lose that brought him grief for the first time in his life?", ["cotton"], "fact",
     ["whole"], None),
    (LS1995, "Beyond the material loss, what did he really mourn?", ["fantasy", "hopes", "dreams"], "fact",
     ["w:but the fantasy the hopes the dreams built around it"], None),
    ("librispeech-1272-128104-0000.wav", "Which man is hailed as a champion of the middle class?",
     ["Quilter"], "fact", ["whole"], None),
    (LS2412, "Why won't the narrator talk about his background?", ["tedious", "painful"], "fact",
     ["w:the narrative would be tedious to him and painful to myself"], None),
    (LS2412, "What does the narrator decline to tell the reader about?",
     ["antecedents", "circumstances", "native country", "ancestry", "background", "past"], "fact",
     ["w:i will say nothing of my antecedents nor of the circumstances which led me to leave my native country"],
     None),
    ("stereo-2ch-librispeech-61-70968-0000-L.wav", "Who was the man complaining about?", ["wizard"], "fact",
     ["whole"], None),
    ("stereo-2ch-librispeech-61-70968-0000-L.wav", "Where had the wizard disappeared to?", ["curtain"], "fact",
     ["whole"], None),
    ("aishell1-BAC009S0724W0121.wav", "Which city's real-estate agency association is mentioned?",
     ["Guangzhou", "广州", "廣州", "Canton"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-de.wav", "What was the room behind the portal used as?",
     ["mortuary", "morgue", "Leichenhalle"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-es.wav", "What colour are the sands described as?", ["white", "blanquecin"],
     "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-es.wav", "How coarse is the grain of the sand?", ["medium", "medio"],
     "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-fr.wav", "What posts did he hold under the Consulate?",
     ["forest", "foret", "conseiller", "council"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-it.wav", "Where were some of his songs first created?", ["radio"],
     "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-ja.wav", "According to the Japanese recording, what comes into being "
     "regarding objective reality?", ["knowledge", "知識", "judg", "判断"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-ko.wav", "Which way did he walk while dodging about?", ["side", "옆"],
     "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-pt.wav", "Which old animal can't learn a trade?", ["fox", "raposa"],
     "cross-lingual", ["whole"], None),
    (CROC, "Which animal's sound is being described?", ["crocodile"], "fact",
     ["w:this is what a crocodile sounds like"], None),
    (CROC, "What were the passengers asked to fasten?", ["seat belt", "seatbelt"], "fact",
     ["w:please fasten your seat belts"], None),
    (CROC, "What does the announcer say they are expecting?", ["turbulence"], "exact-phrase",
     ["w:we are expecting some turbulence"], None),
    (PHONE, "Where is Sheila originally from?", ["Chicago"], "fact", ["stm:And I'm Sheila in Texas"], "Sheila"),
    (PHONE, "Which of the two callers is in Texas?", ["Sheila"], "who-said", ["stm:And I'm Sheila in Texas"],
     "Sheila"),
    (PHONE, "Who mentioned hearing a beep?", ["Diane"], "who-said", ["stm:I heard a beep"], "Diane"),
    (PHONE, "Who says people down there call her a Yankee?", ["Sheila"], "who-said", ["stm:Yankee"], "Sheila"),
    (PHONE, "Who else on the call grew up in Chicago?", ["Diane"], "who-said", ["stm:Chicago also"], "Diane"),
    (PHONE, "Where does Diane live now?", ["New Jersey"], "fact",
     ["stm:This is Diane in New Jersey", "stm:I'm in New Jersey now though", "stm:I don't hear that"], "Diane"),
    (AMI, "In the remote control meeting, whose opinion did the person who raised the LCD idea want to hear?",
     ["design"], "who-said", ["w:I wonder what our design people think"], "FEE016"),
    (AMI, "What did the participant who agreed with the LCD suggestion say people would find easier?",
     ["browse", "browsing"], "who-said", ["w:people might find it easier to browse"], "MEO015"),
    (AMI, "What did the speaker who described a section that opens up say it would give access to?",
     ["sound", "options", "recording", "other functions"], "who-said",
     ["w:a section opens up or something to the other functions where you can do sound or options"], "FEE013"),
    (AMI, "Which everyday device did the meeting use as the model for a menu display?", ["phone", "mobile"],
     "fact", ["w:but you know on a mobile phone", "w:you can press a key and it gives you a menu",
              "w:like a mobile", "w:similar to what you have on mobile phone"], None),
    (AMI, "What problem with the symbols on remote controls was raised in the meeting?", ["understand"],
     "fact", ["w:symbols that you don't necessarily understand symbols you're meant to understand that you don't"],
     "FEE016"),
    (SONNET, "According to the sonnet, what do we want from the fairest creatures?", ["increase"], "fact",
     ["w:from fairest creatures we desire increase"], None),
    (SONNET, "What does the poem hope might never die?", ["rose"], "fact",
     ["w:that thereby beauty's rose might never die"], None),
    (SONNET, "In Shakespeare's first sonnet, the young man is called the world's fresh what?", ["ornament"],
     "exact-phrase", ["w:thou that art now the world's fresh ornament"], None),
    (SONNET, "What does the poet urge the young man to pity?", ["the world"], "fact",
     ["w:pity the world or else this glutton be"], None),
    (SIMPL, "Who is the author of the Simplicissimus?", ["Grimmelshausen"], "cross-lingual",
     ["w:hans jakob christoffel von grimmelshausen"], None),
    (SIMPL, "What is the name of the vagabond whose life story the title page announces?",
     ["Sternfels", "Melchior"], "cross-lingual", ["w:namens melchior sternfels von fuchshaim"], None),
    (SIMPL, "What does the closing rhyme say the author wanted to tell with laughter?", ["truth", "Wahrheit"],
     "cross-lingual", ["w:mit lachen die wahrheit zu sagen"], None),
    (VENENO, "To whom did Alarcón dedicate El Capitán Veneno?", ["Tamayo"], "cross-lingual",
     ["w:al señor d manuel tamayo y baus"], None),
    (VENENO, "In which town were the two friends spending the summer?", ["Valdemoro"], "cross-lingual",
     ["w:en esta sosegada villa de valdemoro"], None),
    (VENENO, "What date is on the dedication letter?", ["1881"], "cross-lingual",
     ["w:20 de septiembre de 1881"], None),
    (HARVARD, "What did the speaker say to do when you hear the bell?", ["come quickly"], "exact-phrase",
     ["w:when you hear the bell come quickly"], None),
    (HARVARD, "What tore down the barn?", ["severe storm"], "exact-phrase",
     ["w:a severe storm tore down the barn"], None),
    (HARVARD, "What did the blind man count?", ["old coins"], "exact-phrase",
     ["w:the blind man counted his old coins"], None),
    (HARVARD, "Where was the pink shell found?", ["sandy beach"], "exact-phrase",
     ["w:a pink shell was found on the sandy beach"], None),
    (HARVARD, "How long did it take to get home from the journey?", ["year"], "fact",
     ["w:the long journey home took a year"], None),
    # Unanswerable: plausible, adjacent to a recording's topic, answered by none of them.
    (PHONE, "What does Sheila do for a living?", [], "unanswerable", [], None),
    (AMI, "What price did the team set for the remote control?", [], "unanswerable", [], None),
    (AMI, "What kind of batteries will the remote control use?", [], "unanswerable", [], None),
    (LS2412, "Which country did the narrator leave behind?", [], "unanswerable", [], None),
    (CROC, "Which airline made the seat-belt announcement?", [], "unanswerable", [], None),
    (LS1995, "How much money was the lost cotton worth?", [], "unanswerable", [], None),
    (SIMPL, "In what year was the Simplicissimus first published?", [], "unanswerable", [], None),
    (HARVARD, "What kind of stone was set in the gold ring?", [], "unanswerable", [], None),
    # A speaker named by when they first spoke (issue 4: "what did the second speaker say about Y?").
    # Added after the 55 above, so their ids stay as they were.
    (PHONE, "Where does the first speaker on the call live?", ["New Jersey"], "who-said",
     ["stm:This is Diane in New Jersey", "stm:I'm in New Jersey now though", "stm:I don't hear that"], "Diane"),
    (PHONE, "Which state is the second speaker on the call in?", ["Texas"], "who-said",
     ["stm:And I'm Sheila in Texas"], "Sheila"),
    (CROC, "In the recording with the crocodile, what did the first speaker say?", ["begins"], "who-said",
     ["w:and so it begins"], "speaker_1"),
    (AMI, "In the remote control meeting, what did the first speaker say about symbols?", ["understand"],
     "who-said", ["w:symbols that you don't necessarily understand symbols you're meant to understand that you don't"],
     "FEE016"),
    (PHONE, "What did the third speaker on the phone call say about Chicago?", [], "unanswerable", [], None),
]

# Phrases of clean single-speaker English clips whose times the stitched archives report.
PHRASES = {
    JFK: ["ask not what your country can do for you", "ask what you can do for your country"],
    LS1995: ["the loss of the cotton itself"],
    "librispeech-1272-128104-0000.wav": ["the apostle of the middle classes"],
    LS2412: ["tedious to him and painful to myself"],
    HARVARD: ["a gold ring will please most any girl", "the long journey home took a year",
              "she saw a cat in the neighbor's house", "a pink shell was found on the sandy beach",
              "small children came to see him", "the grass and bushes were wet with dew",
              "the blind man counted his old coins", "a severe storm tore down the barn",
              "she called his name many times", "when you hear the bell come quickly"],
    SONNET: ["from fairest creatures we desire increase", "making a famine where abundance lies",
             "the world's fresh ornament", "to eat the world's due by the grave and thee"],
    CROC: ["and so it begins", "what a crocodile sounds like", "please fasten your seat belts",
           "we are expecting some turbulence"],
}


# The held-out set (sets/heldout.jsonl, ids t01...): written at stop 33 from the reference transcripts
# alone, to the protocol in sets/README.md, before earmark was asked any of them; never tuned on. Same
# shape as SPEC.
HELDOUT = [
    (JFK, "Whom is Kennedy addressing in this excerpt?", ["fellow Americans"], "fact",
     ["w:and so my fellow americans"], None),
    (LS1995, "How does the narrator describe what the loss of the cotton was in his life?", ["first great sorrow"],
     "fact", ["whole"], None),
    ("librispeech-1272-128104-0000.wav", "What are we glad to welcome from Mr. Quilter?", ["gospel"], "fact",
     ["whole"], None),
    (LS2412, "Whose pardon does the narrator ask before refusing to speak of his past?", ["reader"], "fact",
     ["w:if the reader will excuse me"], None),
    (LS2412, "What was the narrator's profession before he left his country?", [], "unanswerable", [], None),
    ("stereo-2ch-librispeech-61-70968-0000-L.wav", "What seems extremely distant?", ["horizon"], "fact",
     ["whole"], None),
    ("stereo-2ch-librispeech-61-70968-0000-L.wav", "On which side was the curtain the wizard vanished behind?",
     ["left"], "fact", ["whole"], None),
    ("aishell1-BAC009S0724W0121.wav", "What did the Guangzhou real-estate agents' association do, according to the "
     "Mandarin clip?", ["analy", "分析"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-de.wav", "In the German clip, the room used as a mortuary lies behind what?",
     ["portal"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-es.wav", "How many visitors does the sandy place get, according to the Spanish clip?",
     ["poca", "little", "few", "low attendance", "scarce"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-fr.wav", "Besides keeping the waters and forests, what council post did he take "
     "under the Consulate?", ["general"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-it.wav", "The Italian speaker corrects 'songs' to what?", ["rhythm", "ritmi"],
     "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-ja.wav", "What kind of knowledge of objective reality does the Japanese recording "
     "say is established?", ["judg", "判断"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-ko.wav", "In the Korean recording, what was he doing as he walked along the road?",
     ["dodg", "avoid", "evad", "피하"], "cross-lingual", ["whole"], None),
    ("picovoice-leopard-test-pt.wav", "According to the Portuguese saying, what can an old fox not learn?",
     ["trade", "craft", "oficio", "profession", "skill"], "cross-lingual", ["whole"], None),
    (CROC, "What does the speaker compare the crocodile's sound to?", ["meditat"], "fact",
     ["w:it's like meditating in the water"], None),
    (CROC, "What did the third speaker in the crocodile recording announce?", ["turbulence", "seat belt", "seatbelt"],
     "who-said", ["w:ladies and gentlemen please fasten your seat belts we are expecting some turbulence"],
     "speaker_3"),
    (CROC, "Whom does the announcer address?", ["ladies and gentlemen"], "fact", ["w:ladies and gentlemen"], None),
    (PHONE, "Who answered 'Neither did I' on the call?", ["Sheila"], "who-said", ["stm:Neither did I."], "Sheila"),
    (PHONE, "What did Diane hear before she realised someone was on the line?", ["beep"], "fact",
     ["stm:I heard a beep"], "Diane"),
    (PHONE, "According to Sheila, how different are Texas and New Jersey?",
     ["much difference", "not much", "not that much"], "fact", ["stm:there isn't that much difference"], "Sheila"),
    (PHONE, "What does Diane say she does not hear in New Jersey?", ["Yankee"], "fact",
     ["stm:they all call me a Yankee", "stm:I don't hear that in New Jersey"], None),
    (PHONE, "Who said hello first on the call?", ["Diane"], "who-said", ["stm:Hello?"], "Diane"),
    (PHONE, "At what time of day did Diane and Sheila talk?", [], "unanswerable", [], None),
    (PHONE, "Which city in Texas does Sheila live in?", [], "unanswerable", [], None),
    (AMI, "What did one participant suggest instead of having too many buttons on the remote?",
     ["LCD", "L_C_D_", "display", "menu"], "fact", ["w:instead of having too many b buttons"], "MEO015"),
    (AMI, "Where on the remote should the main things be, according to the meeting?", ["front"], "fact",
     ["w:the main things on the front of it"], "FEE013"),
    (AMI, "What did the participant want to avoid for the user by having fewer buttons?", ["complicated"], "fact",
     ["w:make it complicated for the user"], "MEO015"),
    (AMI, "What can you press on a mobile phone to get a menu, according to the meeting?", ["key"], "fact",
     ["w:you can press a key and it gives you a menu"], "FEE016"),
    (AMI, "What colour did the team choose for the remote control?", [], "unanswerable", [], None),
    (SONNET, "In the first sonnet, what should the tender heir bear?", ["memory"], "fact",
     ["w:his tender heir might bear his memory"], None),
    (SONNET, "What does the young man make where abundance lies?", ["famine"], "exact-phrase",
     ["w:making a famine where abundance lies"], None),
    (SONNET, "What does the sonnet say the young man feeds his light's flame with?", ["fuel"], "fact",
     ["w:feed'st thy light's flame with self-substantial fuel"], None),
    (SONNET, "Of what season is the young man the only herald?", ["spring"], "fact",
     ["w:and only herald to the gaudy spring"], None),
    (SONNET, "To whom did Shakespeare dedicate his sonnets?", [], "unanswerable", [], None),
    (SIMPL, "How does the Simplicissimus title page describe the vagabond?",
     ["einfaltig", "simple", "wunderlich", "seltsam", "strange", "odd", "peculiar", "whimsical", "wondrous"],
     "cross-lingual", ["w:eines einfältigen wunderlichen und seltsamen vaganten"], None),
    (SIMPL, "According to the title page, how did the vagabond leave the world in the end?",
     ["freiwillig", "ungezwungen", "voluntar", "willing", "free will", "unforced", "of his own"], "cross-lingual",
     ["w:auch warum er endlich solche wiederum freiwillig und ungezwungen verlassen habe"], None),
    (SIMPL, "What is the Simplicissimus said to be like to read?",
     ["lustig", "annehmlich", "erfreulich", "fun", "pleasant", "delight", "enjoy", "amusing", "merry", "cheerful"],
     "cross-lingual", ["w:annehmlich erfreulich und lustig zu lesen"], None),
    (SIMPL, "How many chapters does the Simplicissimus have?", [], "unanswerable", [], None),
    (VENENO, "What position did Manuel Tamayo y Baus hold?", ["secretar"], "cross-lingual",
     ["w:secretario perpetuo de la real academia española"], None),
    (VENENO, "Where had the story of Captain Veneno lived unpublished?", ["imagina"], "cross-lingual",
     ["w:tal y como vivía inédita en el archivo de mi imaginación"], None),
    (VENENO, "Who signed the dedication letter of El Capitán Veneno?", ["Pedro"], "cross-lingual",
     ["w:te quiere y te admira tu afectísimo hermano menor pedro"], None),
    (VENENO, "What did Tamayo say the story would make?", ["interesant", "interesting"], "cross-lingual",
     ["w:de que me daría materia para una interesante obra"], None),
    (VENENO, "How many copies of El Capitán Veneno were printed?", [], "unanswerable", [], None),
    (HARVARD, "What will please most any girl?", ["gold ring"], "exact-phrase",
     ["w:a gold ring will please most any girl"], None),
    (HARVARD, "What were the grass and bushes wet with?", ["dew"], "fact", ["w:the grass and bushes were wet with dew"],
     None),
    (HARVARD, "Where did she see a cat?", ["neighbor", "neighbour"], "fact", ["w:she saw a cat in the neighbor's house"],
     None),
    (HARVARD, "Who came to see him?", ["children"], "fact", ["w:small children came to see him"], None),
    (HARVARD, "What was the blind man's name?", [], "unanswerable", [], None),
]
HELDOUT_PATH = EVAL_DIR / "sets" / "heldout.jsonl"


def gold_span(file: str, spec: str, speaker: str | None, real_dir: Path, lang: str) -> dict:
    """Resolve one gold spec ("whole", "stm:<text in turn>", "w:<phrase>") to {file, start, end}."""
    if spec == "whole":
        return {"file": file, "start": 0.0, "end": load_recordings()[file]["duration"]}
    if spec.startswith("stm:"):
        turns = read_turns((real_dir / file).with_suffix(".stm"))
        turn = next(t for t in turns if spec[4:] in t.text)
        return {"file": file, "start": turn.start, "end": turn.end}
    start, end = find_span(load_alignment(file)["reference_words"], spec[2:], lang)
    rttm = (real_dir / file).with_suffix(".rttm")
    if speaker and rttm.is_file():  # the words must lie in one of that speaker's turns (0.5 s slack)
        if not any(t.speaker == speaker and t.start - 0.5 <= start and end <= t.end + 0.5
                   for t in read_turns(rttm)):
            raise ValueError(f"{spec!r} ({start}-{end}) is not inside a turn of {speaker} in {rttm.name}")
    return {"file": file, "start": start, "end": end}


def build_questions(real_dir: Path = REAL_DIR, spec: list = SPEC, prefix: str = "q") -> list[dict]:
    """A question set (the real one by default), in the issue-3 shape, gold spans resolved."""
    recordings = load_recordings()
    out = []
    for i, (file, question, answers, kind, golds, speaker) in enumerate(spec, start=1):
        lang = recordings[file]["lang"]
        q = {"id": f"{prefix}{i:02d}", "question": question, "answerable": kind != "unanswerable",
             "gold": [gold_span(file, g, speaker, real_dir, lang) for g in golds],
             "answer_any": answers, "lang": lang, "kind": kind}
        if speaker:
            q["speaker"] = speaker
        out.append(q)
    return out


def build_phrases() -> list[dict]:
    """Known phrases with their times inside each clip, for the stitched archives."""
    return [{"file": file, "phrase": phrase, **dict(zip(("start", "end"),
             find_span(load_alignment(file)["reference_words"], phrase)))}
            for file, phrases in PHRASES.items() for phrase in phrases]


def main() -> None:
    """Rewrite ``sets/real.jsonl``, ``sets/heldout.jsonl`` and ``phrases.json``."""
    for path, questions in ((SET_PATH, build_questions()), (HELDOUT_PATH, build_questions(spec=HELDOUT, prefix="t"))):
        path.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in questions) + "\n", encoding="utf-8")
    PHRASES_JSON.write_text(json.dumps(build_phrases(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
