"""Writes llm/demo/corpus/rag_dialogues.jsonl: answer-from-context dialogues in exactly the app's RAG format.

    .venv/bin/python scripts/demo_rag_dialogues.py [--out FILE] [--seed 0]
    .venv/bin/python scripts/demo_rag_dialogues.py --knowledge 12          # corpus/rag_knowledge.jsonl
    .venv/bin/python scripts/demo_rag_dialogues.py --app-chunks --seed 2 --synthetic 16000 --out FILE

Each dialogue is ONE user message, rendered by the same `ChatPromptTemplate` over `rag.prompts.ANSWER_PROMPT`
that `rag.chain.build_chain` uses, with the context from `rag.chain.format_context`, and a short assistant
answer that cites the relevant chunk as [n] (or says the context does not mention it). Chunks come from
the sample `knowledge/` folder indexed by a real `KnowledgeBase` (the app's splitter, default embedder, in a
throw-away ROLECHAT_HOME) plus the demo corpus's made-up facts (`llm.demo.dialogues.FACT_MAKERS`). Contexts
are either what the real retriever returns for the question (k=5, as the app sends) or 1-5 chunks with
distractors in random order. Most dialogues (`synthetic()`, marked "synthetic": true so the build can train
on a share of them) are about invented documents from `demo_facts.py`: the reply copies the passage's
sentence and cites it, or starts with 「资料中没有提到」 when no passage says it; some have a persona-style
system message first (the engine may put the persona's system prompt before the answer prompt).
`--app-chunks` writes only such dialogues, over invented documents shaped as the app shows chunks of real
guides and notices (a "标题 > 小节" line, field lines, the entity's short name): an `--extra` file for the build.
Deterministic for a seed. Lives in scripts/ because it needs both rag and llm.demo (llm never imports rag).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import demo_facts as F  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402

from rolechat.llm.demo import phrases as P  # noqa: E402
from rolechat.llm.demo.dialogues import CORPUS_DIR, FACT_MAKERS, write_jsonl  # noqa: E402
from rolechat.rag import prompts  # noqa: E402
from rolechat.rag.chain import format_context  # noqa: E402

OUT_FILE = CORPUS_DIR / "rag_dialogues.jsonl"
KNOWLEDGE_FILE = CORPUS_DIR / "rag_knowledge.jsonl"
BENCH_QUESTIONS = ROOT / "bench" / "data"
KNOWLEDGE_DIR = ROOT / "knowledge"

# (key text that only the relevant chunk holds, [question paraphrases], answer sentence without citation)
QA: list[tuple[str, list[str], str]] = [
    # rolechat-快速上手.md
    (
        "本地模型上运行",
        ["rolechat 是什么？", "rolechat 是做什么的？", "介绍一下 rolechat"],
        "rolechat 是一个在本地模型上运行的中文角色扮演和知识库问答工具",
    ),
    (
        "ROLECHAT_HOME",
        ["rolechat 的数据保存在哪里？", "数据存在哪个目录？", "ROLECHAT_HOME 是什么？"],
        "所有数据都保存在 ROLECHAT_HOME 目录，默认是 ~/.rolechat",
    ),
    (
        "rolechat index 文件夹",
        ["怎么建立知识库？", "如何把一个文件夹建成知识库？", "怎样创建知识库？"],
        "用 rolechat index 文件夹 --kb 名称 就能把一个文件夹建成知识库",
    ),
    (
        "支持 Markdown",
        ["知识库支持哪些文件格式？", "能索引哪些类型的文件？", "支持 PDF 吗？"],
        "支持 Markdown、纯文本、PDF、Word（docx）、网页（html）、JSON/JSONL、CSV/TSV 和字幕文件（srt/vtt）",
    ),
    (
        "只有新增或修改过",
        ["再次运行索引命令会怎样？", "文件改了要全部重新索引吗？", "重新索引会很慢吗？"],
        "再次运行同一条命令时，只有新增或修改过的文件会被重新处理，没有变化的文件不会重新计算向量",
    ),
    ("删除的文件会自动", ["删掉的文件会留在知识库里吗？", "文件删除以后怎么办？"], "删除的文件会自动从知识库中移除"),
    (
        "rolechat search",
        ["怎么查看检索到的片段？", "怎么只检索不回答？", "rolechat search 有什么用？"],
        '用 rolechat search "问题" --kb 名称 可以显示检索到的片段、来源文件、位置和分数',
    ),
    (
        "rolechat ask",
        ["怎么让模型根据知识库回答？", "怎么向知识库提问？", "rolechat ask 怎么用？"],
        '用 rolechat ask "问题" --kb 名称，模型会根据知识库回答，并用 [1]、[2] 标注出处',
    ),
    (
        "--persona 角色名",
        ["能让角色来回答知识库的问题吗？", "怎么用某个角色的语气回答？"],
        "可以，加上 --persona 角色名 就能让某个角色用自己的语气回答",
    ),
    (
        "rolechat kb list",
        ["怎么列出所有知识库？", "怎么查看有哪些知识库？"],
        "用 rolechat kb list 列出所有知识库，用 rolechat kb show 名称 查看文档和设置",
    ),
    (
        "rolechat kb delete",
        ["怎么删除知识库？", "删除知识库会删掉我的文档吗？"],
        "用 rolechat kb delete 名称 删除知识库，不会删除你的原始文档",
    ),
    # rolechat-知识库常见问题.md
    (
        "chardet",
        ["文件编码乱码怎么办？", "GBK 编码的文件能读吗？", "中文文件乱码需要手动转换吗？"],
        "不用手动转换，rolechat 会依次尝试 UTF-8、UTF-16、GB18030/GBK 和 Big5，最后才交给 chardet 猜测",
    ),
    (
        "索引报告会列出",
        ["为什么有的文件没有被索引？", "有些文件被跳过了是什么原因？"],
        "索引报告会列出每个被跳过或失败的文件以及原因，例如空文件、二进制文件或损坏的 PDF",
    ),
    (
        "已经算好的向量",
        ["索引到一半中断了怎么办？", "索引被打断了要从头再来吗？"],
        "直接重新运行同一条 rolechat index 命令即可，已经算好的向量会被复用，不会出现重复的片段",
    ),
    (
        "bge-small-zh",
        ["怎么提升检索效果？", "怎么换成中文嵌入模型？", "默认的嵌入模型效果不好怎么办？"],
        "在配置文件的 [rag] 部分把 embedder 设为中文模型所在的文件夹，例如 BAAI/bge-small-zh-v1.5",
    ),
    (
        "几乎不认识中文",
        ["默认的嵌入模型是什么？", "为什么检索主要靠 BM25？"],
        "默认的 all-MiniLM-L6-v2 几乎不认识中文，所以默认的混合检索主要依靠 BM25 关键词检索",
    ),
    (
        "chroma_url",
        ["团队怎么共享知识库？", "多人能用同一个知识库吗？", "怎么连接 Chroma 服务器？"],
        "启动一个 Chroma 服务器，然后在配置文件里设置 chroma_url 指向它",
    ),
    # 云雾山茶园-冲泡指南.md
    (
        "玻璃杯",
        ["云雾毛尖怎么泡？", "毛尖用多少度的水？", "冲泡云雾毛尖要放多少茶叶？"],
        "云雾毛尖用玻璃杯冲泡，水温八十到八十五摄氏度，三克茶叶配一百五十毫升水",
    ),
    (
        "盖碗",
        ["岚山红怎么泡？", "岚山红用多少度的水？", "岚山红能泡几次？"],
        "岚山红用盖碗冲泡，水温九十到九十五摄氏度，茶水比例一比五十，可以冲泡五到六次",
    ),
    (
        "煮饮",
        ["老枞白茶怎么泡？", "老白茶怎么喝？", "白茶可以煮吗？"],
        "新茶可以用九十摄氏度的水冲泡，存放三年以上的老白茶适合煮饮，五克茶叶加五百毫升水，小火煮三分钟",
    ),
    # 云雾山茶园-参观须知.txt
    (
        "开放时间",
        ["茶园什么时候开放？", "茶园几点开门？", "茶园周一开吗？"],
        "茶园每年三月一日至十一月三十日开放，每天上午八点半到下午五点，周一闭园",
    ),
    (
        "成人三十元",
        ["茶园门票多少钱？", "学生买票有优惠吗？", "小孩要买票吗？"],
        "成人门票三十元，学生和六十岁以上老人凭证件半价，一点二米以下儿童免费",
    ),
    (
        "采茶体验：",
        ["可以采茶吗？", "采茶体验多少钱？", "什么时候能体验采茶？"],
        "采茶体验在每年三月中旬到四月底开放，每人八十元，包含一小时采茶和炒茶师傅的现场讲解",
    ),
    (
        "十二路",
        ["怎么去茶园？", "坐公交怎么到茶园？", "茶园的交通怎么样？"],
        "从青岚县汽车站乘坐十二路公交车到“茶园南门”站下车，车程约四十分钟",
    ),
    ("南门停车场", ["开车去茶园停在哪里？", "茶园停车收费吗？"], "自驾游客可以把车停在南门停车场，停车免费"),
    (
        "禁止吸烟",
        ["茶园里可以抽烟吗？", "参观茶园要注意什么？", "下雨天去茶园要注意什么？"],
        "雨天山路湿滑，请穿防滑鞋；茶园内禁止吸烟和使用明火",
    ),
    # 云雾山茶园-简介.md
    (
        "南坡",
        ["云雾山茶园在哪里？", "茶园的海拔有多高？", "介绍一下云雾山茶园"],
        "云雾山茶园位于青岚县云雾山南坡，海拔八百米到一千二百米之间",
    ),
    ("一九五八", ["茶园是什么时候建的？", "茶园是谁开垦的？"], "茶园始建于一九五八年，由当地的三个村子共同开垦"),
    (
        "一芽一叶",
        ["茶园有哪些茶？", "云雾毛尖是什么茶？", "茶园最有名的茶是什么？"],
        "茶园的主要茶品是云雾毛尖、岚山红和老枞白茶，其中云雾毛尖是最有名的绿茶",
    ),
    (
        "蜜香",
        ["岚山红是什么茶？", "岚山红有什么特点？"],
        "岚山红是夏季采摘后经过萎凋、揉捻和发酵制成的红茶，带有明显的蜜香",
    ),
    (
        "只晒不炒",
        ["老枞白茶是怎么做的？", "老枞白茶有什么特点？"],
        "老枞白茶用树龄五十年以上的老茶树鲜叶制作，只晒不炒，可以存放多年",
    ),
    (
        "化学农药",
        ["茶园用农药吗？", "茶园怎么种茶？", "茶园怎么除虫？"],
        "茶园从二零一二年起不使用化学农药，改用黄色粘虫板和人工除草",
    ),
]

# Questions the sample knowledge base does not answer (topic named in the reply).
UNANSWERED: list[tuple[str, str]] = [
    ("茶园有住宿吗？", "茶园的住宿"),
    ("茶园附近有什么餐厅？", "餐厅"),
    ("茶叶可以网上买吗？", "网上购买茶叶"),
    ("茶园有几个员工？", "员工人数"),
    ("云雾毛尖多少钱一斤？", "茶叶的价格"),
    ("茶园有导游吗？", "导游服务"),
    ("rolechat 支持语音输入吗？", "语音输入"),
    ("rolechat 可以在手机上用吗？", "手机版"),
    ("知识库最多能放多少文件？", "文件数量的上限"),
    ("rolechat 是谁开发的？", "开发者"),
    ("明天天气怎么样？", "天气"),
    ("今天是星期几？", "日期"),
]

# More questions the sample knowledge base does not answer, for `knowledge_set` (with rewordings).
MORE_UNANSWERED: list[tuple[str, str]] = [
    ("茶园里有厕所吗？", "厕所"),
    ("茶园可以露营吗？", "露营"),
    ("茶园的面积有多大？", "茶园的面积"),
    ("茶园一年产多少茶叶？", "茶叶的产量"),
    ("茶园有茶叶博物馆吗？", "博物馆"),
    ("茶园接待旅游团吗？", "旅游团"),
    ("可以在茶园拍婚纱照吗？", "拍婚纱照"),
    ("茶园的电话是多少？", "茶园的电话"),
    ("茶园有缆车吗？", "缆车"),
    ("茶园晚上有什么活动？", "晚上的活动"),
    ("岚山红是谁发明的？", "岚山红的发明人"),
    ("云雾毛尖适合送礼吗？", "送礼"),
    ("茶园能寄快递吗？", "快递"),
    ("参观茶园要提前预约吗？", "预约"),
    ("茶园有轮椅通道吗？", "轮椅通道"),
    ("rolechat 要付费吗？", "rolechat 的价格"),
    ("rolechat 的最新版本是多少？", "版本号"),
    ("知识库可以导出吗？", "导出知识库"),
    ("rolechat 能生成图片吗？", "生成图片"),
    ("索引一个文件要多长时间？", "索引需要的时间"),
    ("可以同时使用几个知识库？", "同时使用的知识库数量"),
    # near the subjects again, written later (2026-11-30), so that "a question about the subject" is not
    # enough to draw a memorised sentence
    ("茶园有儿童游乐场吗？", "儿童游乐场"),
    ("茶园里可以钓鱼吗？", "钓鱼"),
    ("茶园有医务室吗？", "医务室"),
    ("茶园门口能打到出租车吗？", "出租车"),
    ("茶园有英文讲解吗？", "英文讲解"),
    ("云雾毛尖能放冰箱保存吗？", "茶叶的保存方法"),
    ("喝岚山红有什么功效？", "岚山红的功效"),
    ("孕妇可以喝云雾毛尖吗？", "孕妇能不能喝茶"),
    ("可以骑自行车进茶园吗？", "骑自行车"),
    ("茶园有储物柜吗？", "储物柜"),
    ("茶园举办过什么比赛？", "比赛"),
    ("茶园每年接待多少游客？", "游客人数"),
    ("茶园可以刷信用卡吗？", "付款方式"),
    ("老枞白茶多少钱一饼？", "老枞白茶的价格"),
    ("茶园的茶叶出口吗？", "出口"),
    ("rolechat 需要联网吗？", "联网"),
    ("rolechat 能识别图片里的文字吗？", "识别图片文字"),
    ("rolechat 可以翻译文档吗？", "翻译"),
    ("rolechat 的界面有英文版吗？", "界面语言"),
    ("怎么卸载 rolechat？", "卸载"),
    ("回答错了怎么反馈？", "反馈"),
    ("rolechat 有命令补全吗？", "命令补全"),
    ("知识库的片段有多长？", "片段的长度"),
]

# Mostly "sentence[k]。": the reply starts by copying the passage's sentence, which a small model learns best.
CITE_FORMS = ["{a}[{k}]。"] * 4 + ["根据[{k}]，{a}。"]
NO_ANSWER_FORMS = ["资料中没有提到{t}。", "资料中没有提到{t}，我不知道。", "资料中没有提到{t}，无法回答。"]


def knowledge_chunks(home: Path):
    """Index knowledge/ with the app's KnowledgeBase; return (kb, [Document]) in index order."""
    os.environ["ROLECHAT_HOME"] = str(home)
    from rolechat.settings import set_offline_env

    set_offline_env()
    from rolechat.rag import KnowledgeBase

    kb = KnowledgeBase("sample")
    kb.index([str(KNOWLEDGE_DIR)])
    return kb, kb_documents(kb)


def kb_documents(kb) -> list[Document]:
    """A knowledge base's chunks as LangChain Documents (what the retriever returns), in index order."""
    return [
        Document(c.text, metadata=c.metadata()) for c in sorted(kb.manifest.chunks(), key=lambda c: (c.path, c.ord))
    ]


def answer_template() -> ChatPromptTemplate:
    """The app's answer prompt as `rag.chain.build_chain` renders it."""
    return ChatPromptTemplate.from_messages([("human", prompts.ANSWER_PROMPT)])


def fact_chunk(rng: random.Random):
    """A made-up fact as a chunk (named like a document) with its (question, answer) pairs."""
    passage, qa, topic = rng.choice(FACT_MAKERS)(rng)
    doc = Document(passage, metadata={"source": f"/资料/{topic}.txt", "location": f"第 {rng.randint(1, 40)} 行"})
    return doc, qa, topic


def render(template: ChatPromptTemplate, docs: list[Document], question: str, answer: str, system: str = "") -> dict:
    user = template.invoke({"context": format_context(docs), "question": question}).to_messages()[0].content
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": ([{"role": "system", "content": system}] if system else []) + messages}


def synthetic_doc(
    rng: random.Random, words: F.Words, entity: str | None = None, app_chunks: bool = False
) -> tuple[Document, F.Doc]:
    doc = (F.make_app_doc if app_chunks else F.make_doc)(rng, words, entity)
    ext = rng.choice([".md", ".txt", ".md", ".docx", ".pdf"])
    meta = {"source": f"/资料/{doc.title}{ext}", "location": f"line {rng.randint(1, 60)}"}
    return Document(doc.text, metadata=meta), doc


def synthetic(
    rng: random.Random, template: ChatPromptTemplate, chunks: list[Document], n: int, app_chunks: bool = False
) -> list[dict]:
    """Answer-from-context over invented documents: copy the sentence from [k], or say the passages lack it.

    `app_chunks`: documents shaped like the app's chunks of real guides and notices (`demo_facts.make_app_doc`).
    """
    words = F.load_words()
    out = []
    for _ in range(n):
        n_docs = rng.choices([1, 2, 3, 4, 5], weights=[15, 30, 30, 13, 12])[0]
        target, tdoc = synthetic_doc(rng, words, app_chunks=app_chunks)
        docs = [target] + [synthetic_doc(rng, words, app_chunks=app_chunks)[0] for _ in range(n_docs - 1)]
        if n_docs > 1 and rng.random() < 0.25:  # real documents as distractors too
            docs[-1] = rng.choice(chunks)
        rng.shuffle(docs)
        k = docs.index(target) + 1
        r = rng.random()
        if r < 0.78:
            question, sentence = rng.choice(tdoc.qa)
            answer = cite(rng, sentence, k)
        elif r < 0.87:  # the entity is there, the fact asked about is not
            j = rng.choice([i for i in range(len(F.TEMPLATES)) if i not in tdoc.used])
            _, questions, topic = F.TEMPLATES[j]
            v = F._values(rng, words, tdoc.entity)
            question = rng.choice(questions).format(**v)
            if rng.random() < 0.5:
                question, topic = F.absent_question(rng, tdoc)
            else:
                topic = f"{tdoc.entity}的{topic.format(**v)}"
            answer = no_answer(rng, topic)
        else:  # an entity none of the passages mentions
            _, other = synthetic_doc(rng, words, app_chunks=app_chunks)
            question, sentence = rng.choice(other.qa)
            answer = no_answer(rng, other.entity)
        system = rng.choice(P.SYSTEM_PROMPTS) if rng.random() < 0.12 else ""
        out.append({**render(template, docs, question, answer, system), "synthetic": True})
    return out


# Rewordings applied at random to the QA questions: general Chinese question forms, not tuned to any test set.
PREFIXES = [
    "请问",
    "请问一下，",
    "我想知道",
    "想问一下，",
    "你好，",
    "麻烦问一下，",
    "能告诉我",
    "我想了解一下，",
    "问一下，",
]
SWAPS = [
    ("怎么", "如何"),
    ("怎么", "怎样"),
    ("怎么", "该怎么"),
    ("如何", "怎么"),
    ("多少钱", "什么价格"),
    ("多少钱", "要花多少钱"),
    ("多少", "几"),
    ("可以", "能"),
    ("能", "可以"),
    ("吗？", "么？"),
    ("吗？", "不？"),
    ("茶园", "云雾山茶园"),
    ("云雾山茶园", "茶园"),
    ("什么", "啥"),
    ("哪里", "什么地方"),
    ("哪些", "什么"),
    ("有哪些", "都有哪些"),
    ("是什么", "是指什么"),
    ("几点", "什么时间"),
    ("要", "需要"),
    ("需要", "要"),
    ("用", "使用"),
    ("有什么", "有啥"),
    ("吗？", "吗？谢谢"),
    ("？", "呢？"),
    ("删除", "删掉"),
    ("所有", "全部"),
    ("什么时候", "啥时候"),
    ("多少钱", "收费多少"),
    ("查看", "看"),
    ("列出", "显示"),
    ("怎么办", "该怎么办"),
]


def rewordings(rng: random.Random, question: str, n: int, exclude: set[str]) -> list[str]:
    """Up to n distinct rewordings of `question` (a prefix and/or 1-3 word swaps), none in `exclude`."""
    out: list[str] = []
    for _ in range(n * 20):
        if len(out) >= n:
            break
        q = question
        for old, new in rng.sample(SWAPS, len(SWAPS)):
            if old in q and rng.random() < 0.35:
                q = q.replace(old, new, 1)
        if rng.random() < 0.4:
            q = rng.choice(PREFIXES) + q
        if q != question and q not in out and q not in exclude and not re.search("[吗么不]呢", q):
            out.append(q)
    return out


def bench_questions() -> set[str]:
    """The benchmark's questions (bench/data/demo_questions_*.jsonl): never trained on, even by chance."""
    return {
        json.loads(line)["question"]
        for path in sorted(BENCH_QUESTIONS.glob("demo_questions_*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }


def knowledge_set(kb, chunks: list[Document], seed: int, variants: int) -> list[dict]:
    """Every QA question and `variants` rewordings of it, each with the real retriever's context (answer or
    「资料中没有提到」 as that context allows), the relevant chunk among random others, and without it."""
    rng = random.Random(seed)
    template = answer_template()
    retriever = kb.retriever()
    exclude = bench_questions()
    out = []
    for key, questions, sentence in QA:
        holders = [c for c in chunks if key in c.page_content]
        others = [c for c in chunks if key not in c.page_content]
        for base in questions:
            topic = base.rstrip("？?")
            for q in [base, *rewordings(rng, base, variants, exclude)]:
                out.append(as_retrieved(rng, template, retriever, q, key, sentence, topic))
                docs = rng.sample(others, rng.randint(0, 3)) + [rng.choice(holders)]
                rng.shuffle(docs)
                out.append(citing(rng, template, docs, q, key, sentence))
                if rng.random() < 0.35:
                    out.append(render(template, rng.sample(others, rng.randint(1, 5)), q, no_answer(rng, topic)))
    for base, topic in UNANSWERED + MORE_UNANSWERED:  # near the documents' subjects, but not in them
        for q in [base, *rewordings(rng, base, variants // 4, exclude)]:
            answer = no_answer(rng, topic)
            out.append(render(template, retriever.invoke(q) or rng.sample(chunks, 3), q, answer))
    rng.shuffle(out)
    return out


def no_answer(rng: random.Random, topic: str) -> str:
    return rng.choice(NO_ANSWER_FORMS).format(t=topic)


def cite(rng: random.Random, sentence: str, k: int) -> str:
    return rng.choice(CITE_FORMS).format(a=sentence, k=k)


def citing(rng: random.Random, template, docs: list[Document], q: str, key: str, sentence: str) -> dict:
    """The dialogue answering `q` with `sentence`, cited as the first of `docs` holding `key`."""
    k = next(i for i, d in enumerate(docs, 1) if key in d.page_content)
    return render(template, docs, q, cite(rng, sentence, k))


def as_retrieved(rng: random.Random, template, retriever, q: str, key: str, sentence: str, topic: str) -> dict:
    """Exactly what the app sends for `q` (the real retriever's context), answered with `sentence` if a passage
    holds `key`, else 「资料中没有提到」 `topic`."""
    docs = retriever.invoke(q)
    hit = next((i for i, d in enumerate(docs, 1) if key in d.page_content), None)
    return render(template, docs, q, cite(rng, sentence, hit) if hit else no_answer(rng, topic))


def generate(
    kb,
    chunks: list[Document],
    seed: int = 0,
    random_contexts: int = 2,
    n_facts: int = 150,
    n_unanswered: int = 100,
    n_synthetic: int = 7000,
) -> list[dict]:
    rng = random.Random(seed)
    template = answer_template()
    retriever = kb.retriever()
    out = []
    for key, questions, sentence in QA:
        holders = [c for c in chunks if key in c.page_content]
        if not holders:
            raise ValueError(f"no knowledge/ chunk contains {key!r}: update QA to the documents")
        for q in questions:
            # 1. exactly what the app sends: the real retriever's top k for this question
            out.append(as_retrieved(rng, template, retriever, q, key, sentence, q.rstrip("？?")))
            # 2. the relevant chunk among 0-4 random distractors (knowledge/ and made-up facts), random order
            for _ in range(random_contexts):
                others = [c for c in chunks if key not in c.page_content]
                docs = rng.sample(others, rng.randint(0, 3)) + [fact_chunk(rng)[0] for _ in range(rng.randint(0, 1))]
                docs = docs[:4] + [rng.choice(holders)]
                rng.shuffle(docs)
                out.append(citing(rng, template, docs, q, key, sentence))
            # 3. the same question with the relevant chunk left out
            docs = rng.sample([c for c in chunks if key not in c.page_content], rng.randint(1, 5))
            out.append(render(template, docs, q, no_answer(rng, q.rstrip("？?"))))
    for _ in range(n_facts):  # made-up facts: nothing to memorise, the answer must be copied from [k]
        facts = [fact_chunk(rng) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.3:
            facts = facts[:4]
            docs = [f[0] for f in facts] + rng.sample(chunks, rng.randint(1, 2))
            rng.shuffle(docs)
        else:
            docs = [f[0] for f in facts]
        j = rng.randrange(len(facts))
        question, sentence = rng.choice(facts[j][1])
        k = docs.index(facts[j][0]) + 1
        out.append(render(template, docs, question, cite(rng, sentence.rstrip("。"), k)))
    for _ in range(n_unanswered):
        if rng.random() < 0.5:
            q, topic = rng.choice(UNANSWERED)
            docs = retriever.invoke(q) or rng.sample(chunks, 3)
        else:
            _, qa, topic = fact_chunk(rng)
            q = qa[0][0]
            docs = [fact_chunk(rng)[0] for _ in range(rng.randint(1, 4))]
        out.append(render(template, docs, q, no_answer(rng, topic)))
    out += synthetic(rng, template, chunks, n_synthetic)
    rng.shuffle(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_FILE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--synthetic", type=int, default=7000, help="dialogues over invented documents (e.g. more, for an extra set)"
    )
    ap.add_argument(
        "--knowledge",
        type=int,
        metavar="N",
        help=f"write only the knowledge/ questions, each with N rewordings (to {KNOWLEDGE_FILE.name} by default)",
    )
    ap.add_argument(
        "--app-chunks",
        action="store_true",
        help="write only --synthetic dialogues, over invented documents shaped like the app's chunks of real ones",
    )
    args = ap.parse_args()
    if args.knowledge is not None and args.out == OUT_FILE:
        args.out = KNOWLEDGE_FILE
    with tempfile.TemporaryDirectory(prefix="rolechat-demo-rag-") as home:
        kb, chunks = knowledge_chunks(Path(home))
        try:
            if args.knowledge is not None:
                dialogues = knowledge_set(kb, chunks, args.seed, args.knowledge)
            elif args.app_chunks:
                rng = random.Random(args.seed)
                dialogues = synthetic(rng, answer_template(), chunks, args.synthetic, app_chunks=True)
            else:
                dialogues = generate(kb, chunks, args.seed, n_synthetic=args.synthetic)
        finally:
            kb.close()
    write_jsonl(args.out, dialogues)
    print(f"wrote {len(dialogues)} dialogues ({len(chunks)} knowledge/ chunks) to {args.out}")


if __name__ == "__main__":
    main()
