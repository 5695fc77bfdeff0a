"""Made-up documents for teaching the demo model to copy answers from numbered passages.

Every document is about an invented entity (a name glued from common words) and holds 2-7 sentences from
templates; each template comes with paraphrased questions and the topic it answers. Because entities and
values are random, a question can only be answered by finding the sentence in the context and copying it;
a question about a template the entity's passages lack is answered with 「资料中没有提到……」.

Words come from jieba's dictionary (MIT licensed), read at generation time from the installed package and
never copied into the repository; `common_chars()` (`rolechat.llm.demo.chars`) gives the ~3,500 most frequent
characters by the same dictionary's word counts (the demo tokenizer keeps them as single tokens). Deterministic
for a seed.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from rolechat.llm.demo.chars import common_chars, jieba_entries

__all__ = ["Doc", "Words", "load_words", "make_doc", "make_app_doc", "short_name", "TEMPLATES"]

CN_DIGITS = "零一二三四五六七八九"
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
ORG_TAILS = [
    "书院",
    "博物馆",
    "公司",
    "小学",
    "中学",
    "公园",
    "图书馆",
    "餐厅",
    "研究所",
    "农场",
    "酒店",
    "乐队",
    "俱乐部",
    "协会",
    "工作室",
    "茶园",
    "果园",
    "剧院",
    "书店",
    "面馆",
    "诊所",
    "车站",
    "码头",
    "广场",
    "山庄",
    "客栈",
    "学校",
    "工厂",
    "超市",
    "花园",
    "体育馆",
    "游泳馆",
    "动物园",
    "植物园",
    "画廊",
    "基金会",
    "合作社",
    "实验室",
]
THING_TAILS = ["系统", "软件", "工具", "平台", "插件", "机器人", "相机", "手表", "自行车", "背包", "茶", "酒", "糕点"]
UNITS = ["元", "米", "公里", "克", "千克", "分钟", "小时", "天", "人", "本", "张", "间", "棵", "次", "层", "座"]
CMD_WORDS = [
    "init",
    "build",
    "run",
    "sync",
    "push",
    "pull",
    "check",
    "list",
    "show",
    "clean",
    "serve",
    "index",
    "export",
    "import",
    "merge",
    "split",
    "scan",
    "watch",
    "deploy",
    "backup",
    "restore",
    "login",
    "config",
    "update",
]


@dataclass
class Words:
    nouns: list[str]
    places: list[str]
    verbs: list[str]
    adjs: list[str]


@functools.lru_cache(maxsize=1)
def load_words(min_freq: int = 50) -> Words:
    """Frequent 2-4 character words made only of common characters, by part of speech."""
    common = set(common_chars())
    pools: dict[str, list[str]] = {"n": [], "ns": [], "v": [], "a": []}
    for word, freq, pos in jieba_entries():
        if freq < min_freq or not 2 <= len(word) <= 4 or not all(ch in common for ch in word):
            continue
        if pos in pools:
            pools[pos].append(word)
    return Words(nouns=pools["n"], places=pools["ns"], verbs=pools["v"], adjs=pools["a"])


def cn_number(n: int) -> str:
    """Chinese reading of 0..9999 (三十, 一百零五, 两千三百)."""
    if n < 10:
        return CN_DIGITS[n]
    out, zero = "", False
    for value, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        d = n // value % 10
        if d:
            if zero:
                out += "零"
            out += ("" if (value == 10 and d == 1 and not out) else CN_DIGITS[d]) + name
            zero = False
        elif out:
            zero = True
    return out


def number(rng: random.Random, lo: int = 2, hi: int = 999) -> str:
    n = rng.randint(lo, hi)
    return str(n) if rng.random() < 0.5 else cn_number(n)


def year(rng: random.Random) -> str:
    y = rng.randint(1900, 2025)
    return f"{y}年" if rng.random() < 0.5 else "".join(CN_DIGITS[int(c)] for c in str(y)) + "年"


def clock(rng: random.Random) -> str:
    h = rng.randint(1, 11)
    return rng.choice(["上午", "早上", "下午", "晚上"]) + cn_number(h) + "点" + rng.choice(["", "", "半", "十分"])


def person(rng: random.Random) -> str:
    common = common_chars(1500)
    return rng.choice(SURNAMES) + "".join(rng.choice(common) for _ in range(rng.randint(1, 2)))


def entity(rng: random.Random, w: Words) -> str:
    r = rng.random()
    if r < 0.55:
        return rng.choice(w.places + w.nouns) + rng.choice(ORG_TAILS)
    if r < 0.8:
        return rng.choice(w.nouns + w.adjs) + rng.choice(THING_TAILS)
    return rng.choice(w.nouns) + rng.choice(w.nouns)


# (sentence, [questions], topic): {e} the entity; other fields are filled by _values.
TEMPLATES: list[tuple[str, list[str], str]] = [
    ("{e}位于{place}{noun}旁边", ["{e}在哪里？", "{e}位于什么地方？", "请问{e}在哪儿？", "{e}的位置在哪？"], "位置"),
    ("{e}成立于{year}", ["{e}是哪一年成立的？", "{e}什么时候成立？", "{e}成立多久了？"], "成立时间"),
    ("{e}的负责人是{person}", ["{e}的负责人是谁？", "谁负责{e}？", "{e}归谁管？"], "负责人"),
    (
        "{e}每天{clock}开门，{clock2}关门",
        ["{e}几点开门？", "{e}的营业时间是什么？", "{e}什么时候关门？", "{e}几点营业？"],
        "开放时间",
    ),
    ("{e}的门票是{num}元", ["{e}的门票多少钱？", "去{e}要花多少钱？", "{e}门票贵吗？"], "门票价格"),
    ("{e}共有{num}名{noun}", ["{e}有多少名{noun}？", "{e}一共有几名{noun}？"], "{noun}人数"),
    ("{e}最有名的是{noun}", ["{e}最有名的是什么？", "{e}以什么出名？", "{e}有什么特色？"], "特色"),
    ("{e}的电话是{phone}", ["{e}的电话是多少？", "怎么联系{e}？", "{e}的联系电话是什么？"], "联系电话"),
    ("{e}主要用来{verb}{noun}", ["{e}是用来做什么的？", "{e}有什么用？", "{e}主要做什么？"], "用途"),
    ("{e}的{noun}是{noun2}", ["{e}的{noun}是什么？", "{e}的{noun}是哪个？"], "{noun}"),
    ("{e}重{num}{unit}", ["{e}有多重？", "{e}的重量是多少？"], "重量"),
    ("{e}的创始人是{person}，他原来是一名{noun}", ["{e}是谁创办的？", "{e}的创始人是谁？"], "创始人"),
    (
        "使用{e}时，先{verb}{noun}，再{verb2}{noun2}",
        ["怎么使用{e}？", "{e}怎么用？", "使用{e}的步骤是什么？"],
        "使用方法",
    ),
    (
        "运行 {cmd} {arg} 可以让{e}{verb}{noun}",
        ["怎么让{e}{verb}{noun}？", "{e}怎样{verb}{noun}？", "用什么命令让{e}{verb}{noun}？"],
        "相关命令",
    ),
    ("{e}距离{place}大约{num}公里", ["{e}离{place}有多远？", "从{place}到{e}有多远？"], "距离"),
    ("去{e}可以乘坐{num}路公交车，在{place}站下车", ["怎么去{e}？", "坐公交怎么到{e}？"], "交通"),
    ("{e}在每年{month}举办{noun}节", ["{e}什么时候举办{noun}节？", "{e}的{noun}节在几月？"], "{noun}节"),
    ("{e}不允许{verb}{noun}", ["在{e}可以{verb}{noun}吗？", "{e}能{verb}{noun}吗？"], "{verb}{noun}的规定"),
]
ABSENT_TOPICS = ["停车", "住宿", "餐饮", "网址", "邮箱", "优惠", "年龄限制", "营业执照", "退款", "天气"]
ABSENT_QUESTIONS = [
    ("{e}可以停车吗？", "停车"),
    ("{e}有住宿吗？", "住宿"),
    ("{e}的网址是什么？", "网址"),
    ("{e}的邮箱是多少？", "邮箱"),
    ("{e}有学生优惠吗？", "优惠"),
    ("{e}能退款吗？", "退款"),
    ("{e}附近有餐厅吗？", "餐厅"),
    ("{e}的老板叫什么名字？", "老板"),
]


def _values(rng: random.Random, w: Words, e: str) -> dict[str, str]:
    month = rng.randint(1, 12)
    return {
        "e": e,
        "place": rng.choice(w.places),
        "noun": rng.choice(w.nouns),
        "noun2": rng.choice(w.nouns),
        "verb": rng.choice(w.verbs),
        "verb2": rng.choice(w.verbs),
        "person": person(rng),
        "year": year(rng),
        "clock": clock(rng),
        "clock2": clock(rng),
        "num": number(rng),
        "unit": rng.choice(UNITS),
        "phone": "".join(str(rng.randint(0, 9)) for _ in range(rng.choice([7, 8, 11]))),
        "cmd": rng.choice(["tea", "run", "kit", "app", "box", "mk"])
        + rng.choice(["", "-", "_"])
        + rng.choice(CMD_WORDS),
        "arg": rng.choice(["--", "-", ""]) + rng.choice(CMD_WORDS),
        "month": (cn_number(month) if rng.random() < 0.5 else str(month)) + "月",
    }


@dataclass
class Doc:
    """One passage: its text, its title, and (question, answer sentence, topic) for each fact it states."""

    text: str
    title: str
    entity: str
    qa: list[tuple[str, str]]
    used: set[int]


def make_doc(rng: random.Random, w: Words, e: str | None = None) -> Doc:
    """A passage of 2-7 facts about one invented entity; a third are written under a heading without the name."""
    e = e or entity(rng, w)
    picks = rng.sample(range(len(TEMPLATES)), rng.randint(2, 7))
    headed = rng.random() < 0.3
    sentences, qa = [], []
    for i in picks:
        sentence, questions, _ = TEMPLATES[i]
        v = _values(rng, w, e)
        s = sentence.format(**v)
        if headed and s.startswith(e) and s[len(e)] == "的":
            s = s[len(e) + 1 :]  # "## 名字" then "负责人是……" (as real documents write under a heading)
        sentences.append(s)
        qa.append((rng.choice(questions).format(**v), s))
    body = "".join(s + "。" for s in sentences)
    if headed:
        text = f"## {e}\n\n{body}"
    elif rng.random() < 0.2:
        text = f"# {e}\n\n{body}"
    else:
        text = body
    return Doc(text=text, title=e, entity=e, qa=qa, used=set(picks))


def absent_question(rng: random.Random, doc: Doc) -> tuple[str, str]:
    """A question about doc's entity that none of its sentences answers, and the topic to name."""
    q, topic = rng.choice(ABSENT_QUESTIONS)
    return q.format(e=doc.entity), f"{doc.entity}的{topic}"


# What a real document's section about each template's fact may be called (the topic itself otherwise).
SECTIONS = {
    "位置": ["位置", "地址", "概况"],
    "成立时间": ["简介", "历史", "概况"],
    "负责人": ["联系人", "管理", "简介"],
    "开放时间": ["开放时间", "营业时间", "时间"],
    "门票价格": ["票价", "门票", "收费标准"],
    "特色": ["特色", "亮点", "简介"],
    "联系电话": ["联系方式", "联系我们"],
    "用途": ["简介", "用途", "功能"],
    "重量": ["参数", "规格"],
    "创始人": ["历史", "简介"],
    "使用方法": ["使用方法", "操作步骤", "快速上手"],
    "相关命令": ["命令", "常用命令"],
    "距离": ["位置", "交通"],
    "交通": ["交通", "怎么去"],
}
KINDS = ["简介", "介绍", "参观指南", "使用说明", "须知", "概况", "手册", "通知", "说明"]


def short_name(e: str) -> str:
    """How a document may call its entity after the first mention: the kind word (书院, 软件...) alone."""
    tail = next((t for t in sorted(ORG_TAILS + THING_TAILS, key=len, reverse=True) if e.endswith(t)), "")
    return tail if tail and tail != e else e


def make_app_doc(rng: random.Random, w: Words, e: str | None = None) -> Doc:
    """A passage shaped like the chunks the app's splitter makes of real documents (`--app-chunks`).

    The app shows a chunk under its heading path ("标题 > 小节" on the first line, no "#"), and real guides,
    manuals and notices write "名称简介", sections such as 票价 or 交通, "时间：……" field lines, and the entity's
    short name (天文馆 for 星河天文馆) after the title. Four layouts: plain sentences naming the entity; a title
    line, then sentences; "标题 > 小节" with one or two sentences of that section; a title and "字段：内容" lines.
    Questions name the entity in full or by its short name; the answer is the sentence (or field) as written.
    """
    e = e or entity(rng, w)
    short = short_name(e)
    layout = rng.choices(["plain", "titled", "section", "fields"], weights=[3, 3, 3, 2])[0]
    picks = rng.sample(range(len(TEMPLATES)), rng.randint(1, 2) if layout == "section" else rng.randint(2, 6))
    kind = rng.choice(KINDS) if rng.random() < 0.7 else ""
    title = e + kind
    lines, qa, labels = [], [], []
    for i in picks:
        sentence, questions, topic = TEMPLATES[i]
        v = _values(rng, w, e)
        s = sentence.format(**v)
        q = rng.choice(questions).format(**{**v, "e": e if rng.random() < 0.7 else short})
        if layout != "plain" and s.startswith(e):
            rest = s[len(e) :]
            if layout == "fields" or (rest.startswith("的") and rng.random() < 0.5):
                s = rest.removeprefix("的")  # "门票是79元" under 票价, or as a field
            elif rng.random() < 0.5:
                s = short + rest
        label = topic.format(**v)
        labels.append(label)
        lines.append(f"{rng.choice(SECTIONS.get(label, [label]))}：{s}。" if layout == "fields" else f"{s}。")
        qa.append((q, s))
    if layout == "plain":
        text = "".join(lines)
    elif layout == "titled":
        text = f"{title}\n" + "".join(lines)
    elif layout == "section":
        text = f"{title} > {rng.choice(SECTIONS.get(labels[0], [labels[0]]))}\n" + "".join(lines)
    else:
        text = f"{title}\n\n" + "\n".join(lines)
    stem = f"{e}-{kind}" if kind else e
    return Doc(text=text, title=stem, entity=e, qa=qa, used=set(picks))
