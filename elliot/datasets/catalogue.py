"""The built-in catalogue of public datasets used by the multimodal recommendation papers.

Where every value comes from (so that nobody has to trust it blindly):

* ``tiktok``: HKUDS/DiffMM ships TikTok in its GitHub repository; the URLs are pinned to commit
  ``fae20e64``.  The sha256 of each file was computed from that commit's git blobs, and the
  conversion ``diffmm_tiktok`` (coo-matrix pickles -> ``user<TAB>item<TAB>1`` TSV, sorted) was checked
  to reproduce ``../shared/data/tiktok/{train,val,test}.tsv`` byte for byte (the layout hashes).
* ``lfm2k``: giuspillo/extending_sota_data_mm_feat (Spillo et al.) at commit ``e8c90c3f``, sha256
  computed from the git blobs; ``lfm2k_float32`` (VGGish float64 -> float32) reproduces
  ``../shared/data/lfm2k/vggish.npy`` byte for byte.
* ``ml100k`` / ``ml1m``: GroupLens' archives with the md5 GroupLens publishes next to them
  (``<zip>.md5``), the same values quoted by many independent loaders.
* ``office``, ``toys``, ``beauty``, ``sports``, ``clothing``: the Google Drive file ids of
  sisinflab/Formal-MultiMod-Rec ``data/README.md`` (office's id is also the one the LoG 2023
  hands-on #2 notebook downloads).  No checksum is published: ``None``.
* ``mmrec_*``: MMRec's (enoche/MMRec ``data/README.md``) Google Drive folder; one sub-folder per
  dataset; no checksums published: ``None``.
"""
from __future__ import annotations

from typing import Dict

from elliot.datasets.registry import DatasetEntry, Source

DIFFMM = "https://raw.githubusercontent.com/HKUDS/DiffMM/fae20e642aeeaad4284be6f7fb3432ebb551da8e/Datasets/tiktok/"
SPILLO = ("https://raw.githubusercontent.com/giuspillo/extending_sota_data_mm_feat/"
          "e8c90c3f93ed14753fec4905d37c401de2255160/")
GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
MMREC_FOLDER = "13cBy1EA_saTUuXxVllKgtfci2A09jyaG"

AMAZON_TERMS = ("Amazon product data (McAuley et al.): research use, see "
                "https://cseweb.ucsd.edu/~jmcauley/datasets.html; preprocessed copy shared by the authors on "
                "Google Drive")
AMAZON_CITE = ("McAuley, Targett, Shi, van den Hengel, 'Image-based recommendations on styles and substitutes', "
               "SIGIR 2015; He & McAuley, WWW 2016")
GROUPLENS_TERMS = ("GroupLens research terms: research use only, no redistribution, no commercial use, "
                   "cite Harper & Konstan 2015 (see the README inside the archive)")


def _sha(hexdigest: str) -> str:
    return "sha256:" + hexdigest


def _formal(name: str, title: str, drive_id: str) -> DatasetEntry:
    return DatasetEntry(
        name=name, title=f"Amazon {title} (LATTICE features, Elliot layout)",
        sources=(Source("gdrive", drive_id, None, unpack="zip"),),
        layout={"train.txt": None, "val.txt": None, "test.txt": None, "image_feat/": None, "text_feat/": None},
        licence=AMAZON_TERMS,
        citation=("Malitesta et al., 'Formalizing Multimedia Recommendation through Multimodal Deep Learning', "
                  "ACM TORS 2024; features as in Zhang et al., LATTICE, MM 2021; " + AMAZON_CITE),
        homepage="https://github.com/sisinflab/Formal-MultiMod-Rec/tree/main/data",
        notes=("zip with one top folder; image_feat/ and text_feat/ hold <item>.npy files (visual: CNN features "
               "of the Amazon images, textual: sentence-transformers); no checksum published"),
        config_hint=("strategy: fixed; train_path/validation_path/test_path: ../data/{0}/{train,val,test}.txt; "
                     "VisualAttribute ../data/{0}/image_feat; TextualAttribute ../data/{0}/text_feat"))


def _mmrec(name: str, title: str, sub: str, extra_note: str = "") -> DatasetEntry:
    return DatasetEntry(
        name=f"mmrec_{name}", title=f"Amazon {title} (MMRec layout)",
        sources=(Source("gdrive_folder", MMREC_FOLDER, None, subfolder=sub),),
        layout={f"{sub}.inter": None, "image_feat.npy": None, "text_feat.npy": None},
        licence=AMAZON_TERMS,
        citation=("Zhou, 'MMRec: Simplifying Multimodal Recommendation', MM Asia workshops 2023; "
                  "Zhou & Shen, FREEDOM, MM 2023; " + AMAZON_CITE),
        homepage="https://github.com/enoche/MMRec/tree/master/data",
        notes=("the files of the sub-folder of MMRec's Drive folder; .inter is tab-separated with x_label "
               "0/1/2 = train/valid/test; row i of the .npy = item i; no checksums published" + extra_note),
        config_hint=(f"strategy: mmrec; dataset_path: ../data/{{0}}/{sub}.inter; "
                     "VisualAttribute ../data/{0}/image_feat.npy; TextualAttribute ../data/{0}/text_feat.npy"))


def builtin_entries() -> Dict[str, DatasetEntry]:
    entries = [
        DatasetEntry(
            name="tiktok", title="TikTok micro-video (as distributed with DiffMM / MMSSL)",
            sources=(
                Source("url", DIFFMM + "trnMat.pkl",
                       _sha("1efbc49d1a7ce5268f01e3e0c558df1f8f8644628c76aa6536be4ec61d256916"),
                       unpack="file", dest="trnMat.pkl"),
                Source("url", DIFFMM + "valMat.pkl",
                       _sha("b6971ed696613d565613dd74b101c45b2aa002b66e8ba99cad03abf04db2397b"),
                       unpack="file", dest="valMat.pkl"),
                Source("url", DIFFMM + "tstMat.pkl",
                       _sha("e83a93787d88728572dbdd5b131bae01a90e17c340820e7b8f0a7c27e69d6f9e"),
                       unpack="file", dest="tstMat.pkl"),
                Source("url", DIFFMM + "image_feat.npy",
                       _sha("f6c1ec1726ed2aa80315411199ab2143bee6333821bf58c5f00bd3f5b462efc2"),
                       unpack="file", dest="image_feat.npy"),
                Source("url", DIFFMM + "audio_feat.npy",
                       _sha("d45a44a9d462f578802de914c2feea5cfd45742b2922775a085b9bdc1beba26f"),
                       unpack="file", dest="audio_feat.npy"),
            ),
            layout={
                "train.tsv": _sha("5f6c52d2afd597b77adecb5523b671c332413a4f13e687c8d5d37d4b62f16763"),
                "val.tsv": _sha("1574b62318ef6ce6652d71cba8b290553cac8d444e6eb05ebab5962acf6f0923"),
                "test.tsv": _sha("1cb733f2cd2a7f43bee4c4337b08f6b1dfdc4088b4c6348ddffa5c22cdbf6f9b"),
                "image_feat.npy": _sha("f6c1ec1726ed2aa80315411199ab2143bee6333821bf58c5f00bd3f5b462efc2"),
                "audio_feat.npy": _sha("d45a44a9d462f578802de914c2feea5cfd45742b2922775a085b9bdc1beba26f"),
            },
            postprocess=("diffmm_tiktok",),
            licence=("research use; the original TikTok (ICME 2019 micro-video challenge) site is closed, this is the "
                     "preprocessed copy the DiffMM / MMSSL authors redistribute"),
            citation=("Jiang et al., 'DiffMM: Multi-Modal Diffusion Model for Recommendation', MM 2024; "
                      "Wei et al., 'Multi-Modal Self-Supervised Learning for Recommendation' (MMSSL), WWW 2023"),
            homepage="https://github.com/HKUDS/DiffMM/tree/main/Datasets",
            notes=("9,308 users, 6,710 items, 59,541 / 3,051 / 6,130 interactions; float16 128-d visual and audio "
                   "features; DiffMM's 768-d text_feat.npy (not fetched) has no recorded checksum"),
            local="../shared/data/tiktok",
            config_hint=("strategy: fixed; ../data/{0}/{train,val,test}.tsv; "
                         "VisualAttribute ../data/{0}/image_feat.npy; "
                         "AudioAttribute ../data/{0}/audio_feat.npy")),
        DatasetEntry(
            name="lfm2k", title="Last.fm 2K artists (HetRec 2011) with text and audio features (Spillo et al.)",
            sources=(
                Source("url", SPILLO + "4_mmrec/data/lfm2k/lfm2k.inter",
                       _sha("a555d4b0bfabe0a11d1758c667eb9a29e574a60bd563848a73f5a6fccda1b0f9"),
                       unpack="file", dest="lfm2k.inter"),
                Source("url", SPILLO + "4_mmrec/data/lfm2k/all-MiniLM-L6-v2.npy",
                       _sha("b21e98a91fc4ec11e879615f3c47b6f15bdb6e3b7c0d2a9cf0b8008ec83c46b0"),
                       unpack="file", dest="all-MiniLM-L6-v2.npy"),
                Source("url", SPILLO + "4_mmrec/data/lfm2k/vggish.npy",
                       _sha("50dfedcc27f88929006bc4f425c94c55aa4bce177749b2f93e55fb3d8ac4018c"),
                       unpack="file", dest="vggish.npy"),
                Source("url", SPILLO + "4_mmrec/data/lfm2k/whisper.npy",
                       _sha("2a2690ff74430711e5a9e22889b5b40cc1b931f6250f25501192d7d63cf98995"),
                       unpack="file", dest="whisper.npy"),
                Source("url", SPILLO + "3_data_processing/hetrec2011-lastfm-2k/original_data/readme.txt",
                       _sha("6fe5d1e6f67b025fc50cd70883dd1a1ff16c5ff37b5b7abfb33644b83468b209"),
                       unpack="file", dest="readme.txt"),
            ),
            layout={
                "lfm2k.inter": _sha("a555d4b0bfabe0a11d1758c667eb9a29e574a60bd563848a73f5a6fccda1b0f9"),
                "all-MiniLM-L6-v2.npy": _sha("b21e98a91fc4ec11e879615f3c47b6f15bdb6e3b7c0d2a9cf0b8008ec83c46b0"),
                "vggish.npy": _sha("5a8baa1094e49589a3ca5cea2777df8e6460d3b18b6a5828e60b541ad0831659"),
                "whisper.npy": _sha("2a2690ff74430711e5a9e22889b5b40cc1b931f6250f25501192d7d63cf98995"),
            },
            postprocess=("lfm2k_float32",),
            licence=("HetRec 2011 Last.fm data: non-commercial use (readme.txt); features: see the paper's Zenodo "
                     "record https://zenodo.org/records/15403972"),
            citation=("Spillo et al., 'See the Movie, Hear the Song, Read the Book: Extending MovieLens-1M, "
                      "Last.fm 2K, "
                      "and DBbook with Multimodal Data'; Cantador, Brusilovsky, Kuflik, HetRec 2011 (RecSys 2011)"),
            homepage="https://github.com/giuspillo/extending_sota_data_mm_feat",
            notes=("MMRec format: lfm2k.inter (x_label 0/1/2), row i of each .npy = item i; 1,858 users, 1,425 items; "
                   "vggish.npy is stored as float32 (upstream float64, same values); the shared copy's "
                   "item_meta.tsv is not part of the fetch"),
            local="../shared/data/lfm2k",
            config_hint=("strategy: mmrec; dataset_path: ../data/{0}/lfm2k.inter; TextualAttribute "
                         "../data/{0}/all-MiniLM-L6-v2.npy; AudioAttribute ../data/{0}/vggish.npy")),
        DatasetEntry(
            name="ml100k", title="MovieLens 100K (GroupLens)",
            sources=(Source("url", GROUPLENS + "ml-100k.zip", "md5:0e33842e24a9c977be4e0107933c0723", unpack="zip"),),
            layout={p: None for p in ("README", "u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info",
                                      *(f"u{k}.{s}" for k in range(1, 6) for s in ("base", "test")))},
            licence=GROUPLENS_TERMS,
            citation="Harper & Konstan, 'The MovieLens Datasets: History and Context', ACM TiiS 5(4), 2015",
            homepage="https://grouplens.org/datasets/movielens/100k/",
            notes=("the shared copy (local) adds TMDb plots and posters (items_tmdb.csv, posters/), which are not "
                   "in GroupLens' archive"),
            local="../shared/data/ml100k",
            config_hint="strategy: dataset; dataset_path: ../data/{0}/u.data (user item rating timestamp)"),
        DatasetEntry(
            name="ml1m", title="MovieLens 1M (GroupLens)",
            sources=(Source("url", GROUPLENS + "ml-1m.zip", "md5:c4d9eecfca2ab87c1945afe126590906", unpack="zip"),),
            layout={"README": None, "movies.dat": None, "ratings.dat": None, "users.dat": None},
            licence=GROUPLENS_TERMS,
            citation="Harper & Konstan, 'The MovieLens Datasets: History and Context', ACM TiiS 5(4), 2015",
            homepage="https://grouplens.org/datasets/movielens/1m/",
            notes="ratings.dat is 'user::item::rating::timestamp'; convert to TSV before strategy: dataset",
            config_hint="ratings.dat uses '::' separators"),
        _formal("office", "Office Products", "1u_E3gJgjD-mMCE0GJ_P0slsVY-bO4Ph_"),
        _formal("toys", "Toys and Games", "1M1P41P0uZ9o21ppX9cl_JLRJAos2d5y6"),
        _formal("beauty", "Beauty", "142EgIQ-eYiw6_WzlaNUq5RXmvrC6HxvQ"),
        _formal("sports", "Sports and Outdoors", "1CAz9mWQNfD1T_4kp8i_U_HYcgV72c9fU"),
        _formal("clothing", "Clothing, Shoes and Jewelry", "1xPDKFWLNvjkSAjhyBiJzlSJo0dUAZGik"),
        _mmrec("baby", "Baby", "baby"),
        _mmrec("sports", "Sports and Outdoors", "sports"),
        _mmrec("clothing", "Clothing, Shoes and Jewelry", "clothing",
               "; MMRec's README now lists Baby/Sports/Elec for this folder, so clothing may be gone"),
        _mmrec("elec", "Electronics", "elec"),
    ]
    return {e.name: e for e in entries}
