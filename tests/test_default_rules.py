"""The default rule pack (config/rules/sino-russian-military.yaml) on real
and invented stories.

Every story here was written for these tests (nothing is copied from the
evaluation data): a title and two to four sentences, in the style of a wire
report. Positives report military cooperation between China and Russia;
near misses share words with them but not the meaning.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from monitor.matching import Story, match_story
from monitor.rules import RuleSet, load_rules, parse_term

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "config" / "rules" / "sino-russian-military.yaml"
SEED = ROOT / "seeds" / "000_79a58b876351234c.txt"
RULE = "sino-russian-military"


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules([PACK])


def verdict(ruleset: RuleSet, title: str, body: str) -> tuple[bool, float, tuple[str, ...]]:
    """Matched?, score and failure reasons of the default rule on one story."""
    (result,) = [r for r in match_story(Story(title, "", body), ruleset) if r.rule.id == RULE]
    return result.matched, result.score, result.failed


# (language, title, body): each must be flagged.
POSITIVES: list[tuple[str, str, str]] = [
    (
        "en",
        "China and Russia hold joint naval drills in the Sea of Japan",
        "Warships from the two countries began a week of exercises on Monday, the Chinese "
        "defence ministry said. The drills include anti-submarine training and live firing. "
        "It is the third such exercise this year.",
    ),
    (
        "en",
        "Russian and Chinese bombers fly joint patrol over the Pacific",
        "Two Russian Tu-95 bombers and two Chinese H-6K bombers conducted a joint air patrol "
        "over the western Pacific on Tuesday. Japan and South Korea scrambled fighter jets.",
    ),
    (
        "en",
        "Beijing and Moscow sign roadmap for closer military cooperation",
        "The defence ministers of China and Russia signed a roadmap on Tuesday to expand "
        "military cooperation until 2025. It covers joint exercises and joint patrols, the "
        "Russian defence ministry said.",
    ),
    (
        "en",
        "Russia to sell more fighter jets and air defence systems to China",
        "Moscow will deliver a new batch of Su-35 fighter jets and S-400 air defence systems "
        "to China next year, a Russian arms export official said. Military-technical "
        "cooperation between the two countries has grown since 2014.",
    ),
    (
        "nb",
        "Kina og Russland holder felles militærøvelse",
        "Kinesiske og russiske styrker startet mandag en fellesøvelse i Nord-Kina. Over 10 000 "
        "soldater deltar i øvelsen, opplyser det russiske forsvarsdepartementet.",
    ),
    (
        "nb",
        "Kina og Russland styrker forsvarsbåndene",
        "Forsvarsministrene i de to landene undertegnet en avtale om flere øvelser og patruljer "
        "i Stillehavet.",
    ),
    (
        "nb",
        "Russiske og kinesiske bombefly på fellespatrulje over Japanhavet",
        "To russiske og to kinesiske atombombefly gjennomførte tirsdag en felles patrulje. "
        "Japan sendte jagerfly for å følge flyene.",
    ),
    (
        "nn",
        "Kina og Russland startar felles marineøving",
        "Marinefartøy frå dei to landa tok til med ei felles øving i Japanhavet måndag. "
        "Øvinga skal vare i fem dagar, melde det russiske forsvarsdepartementet.",
    ),
    (
        "nn",
        "Kinesiske og russiske soldatar skal ha felles kamptrening",
        "Forsvarsministrane i Kina og Russland vart samde om meir kamptrening saman. "
        "Avtalen gjeld òg felles patruljar i Stillehavet.",
    ),
    (
        "sv",
        "Kina och Ryssland inleder gemensam militärövning",
        "Kinesiska och ryska fartyg deltar i en gemensam marinövning i Japanska havet. "
        "Övningen pågår i en vecka, enligt det ryska försvarsministeriet.",
    ),
    (
        "da",
        "Kina og Rusland indleder fælles militærøvelse",
        "Kinesiske og russiske krigsskibe deltager i en fælles flådeøvelse i Det Japanske Hav. "
        "Øvelsen varer en uge, oplyser det russiske forsvarsministerium.",
    ),
    (
        "de",
        "Russland und China beginnen gemeinsames Marinemanöver",
        "Kriegsschiffe beider Länder haben am Montag ein gemeinsames Manöver im Japanischen "
        "Meer begonnen. Nach Angaben des russischen Verteidigungsministeriums dauert die "
        "Übung eine Woche.",
    ),
    (
        "fr",
        "La Chine et la Russie lancent des exercices navals conjoints",
        "Des navires de guerre chinois et russes ont entamé lundi des manœuvres conjointes en "
        "mer du Japon. Les exercices doivent durer une semaine, selon le ministère russe de "
        "la Défense.",
    ),
    (
        "es",
        "China y Rusia inician maniobras militares conjuntas",
        "Buques de guerra chinos y rusos comenzaron el lunes ejercicios navales conjuntos en "
        "el mar de Japón. Las maniobras durarán una semana, según el Ministerio de Defensa ruso.",
    ),
    (
        "pt",
        "China e Rússia iniciam exercícios militares conjuntos",
        "Navios de guerra chineses e russos começaram na segunda-feira exercícios navais "
        "conjuntos no mar do Japão. As manobras vão durar uma semana, segundo o Ministério "
        "da Defesa russo.",
    ),
    (
        "nl",
        "China en Rusland houden gezamenlijke militaire oefening",
        "Chinese en Russische oorlogsschepen zijn maandag begonnen aan een gezamenlijke "
        "oefening in de Japanse Zee. De oefening duurt een week, meldt het Russische "
        "ministerie van Defensie.",
    ),
    (
        "ru",
        "Россия и Китай начали совместные военно-морские учения",
        "Корабли ВМФ России и ВМС НОАК приступили к совместным учениям в Японском море. "
        "Учения продлятся неделю, сообщили в Минобороны РФ.",
    ),
    (
        "ru",
        "Бомбардировщики России и Китая провели совместное воздушное патрулирование",
        "Стратегические ракетоносцы Ту-95МС и бомбардировщики ВВС Китая выполнили совместный "
        "полёт над Японским морем. Полёт продолжался около восьми часов.",
    ),
    (
        "uk",
        "Китай і Росія розпочали спільні військові навчання",
        "Кораблі двох країн розпочали спільні навчання в Японському морі. Навчання "
        "триватимуть тиждень, повідомило міністерство оборони Росії.",
    ),
    (
        "zh-Hans",
        "中俄海军在日本海举行联合军事演习",
        "中国和俄罗斯海军舰艇周一在日本海开始为期一周的联合演习。俄罗斯国防部表示，"
        "演习包括反潜和防空科目。",
    ),
    (
        "zh-Hans",
        "中俄两军开展第八次联合空中战略巡航",
        "中国空军和俄罗斯空天军的轰炸机在日本海和东海上空实施联合巡航。这是两国军队年度合作计划的一部分。",
    ),
    (
        "zh-Hant",
        "中俄海軍在日本海舉行聯合軍事演習",
        "中國和俄羅斯海軍艦艇週一在日本海展開為期一週的聯合演習。俄羅斯國防部表示，"
        "演習包括反潛和防空科目。",
    ),
    (
        "ja",
        "中露海軍が日本海で合同演習",
        "中国とロシアの海軍艦艇が月曜日、日本海で1週間の合同演習を始めた。ロシア国防省が明らかにした。",
    ),
    (
        "ko",
        "중국과 러시아, 동해서 연합 해상훈련 실시",
        "중국과 러시아 해군 함정들이 월요일 동해에서 일주일간의 연합훈련을 시작했다. "
        "러시아 국방부가 밝혔다.",
    ),
    (
        "ar",
        "الصين وروسيا تبدآن مناورات بحرية مشتركة",
        "بدأت سفن حربية صينية وروسية يوم الاثنين مناورات بحرية مشتركة في بحر اليابان. "
        "وقالت وزارة الدفاع الروسية إن المناورات ستستمر أسبوعا.",
    ),
    (
        "en",
        "Chinese and Russian warships sail together near Alaska",
        "Eleven Chinese and Russian naval vessels sailed close to the Aleutian Islands, US "
        "officials said. The ships left after being shadowed by American destroyers.",
    ),
    (
        "en",
        "Japan condemns China and Russia's joint bomber flight near its airspace",
        "Tokyo said two Chinese and two Russian bombers flew together over the Sea of Japan "
        "on Tuesday and lodged a protest with both governments.",
    ),
    (
        "en",
        "Sino-Russian naval drills begin off Vladivostok",
        "Ten warships from the two navies started a week of exercises on Monday, according to "
        "the Russian Pacific Fleet.",
    ),
    (
        "en",
        "Japan scrambles jets as Chinese and Russian bombers fly joint patrol",
        "Two bombers from each country flew over the Sea of Japan on Wednesday, the defence "
        "ministry in Tokyo said.",
    ),
    (
        "en",
        "Russia to join China in naval drills in the South China Sea",
        "Russian warships will take part in the exercises in September, the defence ministry "
        "in Moscow said.",
    ),
    (
        "de",
        "Chinesische und russische Bomber fliegen gemeinsam über das Japanische Meer",
        "Die Flugzeuge beider Länder absolvierten am Dienstag eine gemeinsame Patrouille. "
        "Japan und Südkorea ließen Kampfjets aufsteigen.",
    ),
    (
        "de",
        "Russland liefert Kampfjets an China",
        "Moskau will Peking bis Jahresende weitere Su-35-Kampfflugzeuge liefern. Die "
        "militärtechnische Zusammenarbeit beider Länder wächst seit Jahren.",
    ),
    (
        "ru",
        "Совместные учения России и Китая стартовали в Японском море",
        "Отряд кораблей Тихоокеанского флота и корабли ВМС НОАК отработают противолодочную "
        "оборону. Учения продлятся пять дней.",
    ),
    (
        "ru",
        "Россия поставит Китаю новые истребители Су-35",
        "Контракт предусматривает поставку ещё 24 самолётов, сообщил источник в сфере "
        "военно-технического сотрудничества.",
    ),
    (
        "fr",
        "Exercices navals conjoints de la Chine et de la Russie en mer de Chine orientale",
        "Une dizaine de navires participent aux manœuvres, selon Pékin. Les deux pays mènent "
        "de tels exercices chaque année depuis 2012.",
    ),
    (
        "es",
        "Rusia participará en maniobras navales con China",
        "El Ministerio de Defensa ruso anunció que sus buques se sumarán a los ejercicios "
        "en septiembre.",
    ),
    (
        "sv",
        "Ryssland och Kina fördjupar sitt militära samarbete",
        "Försvarsministrarna undertecknade en färdplan för gemensamma övningar och patruller "
        "fram till 2025.",
    ),
    (
        "pt",
        "Rússia e China reforçam cooperação militar",
        "Os ministros da Defesa dos dois países assinaram um acordo para ampliar os exercícios "
        "conjuntos e as patrulhas aéreas.",
    ),
    (
        "nl",
        "Chinese en Russische bommenwerpers vliegen samen over de Oost-Chinese Zee",
        "Japan stuurde gevechtsvliegtuigen op de toestellen af. Het is de zesde gezamenlijke "
        "patrouille sinds 2019.",
    ),
    (
        "da",
        "Kinesiske og russiske bombefly fløj sammen over Det Japanske Hav",
        "Japan sendte kampfly på vingerne. Det er sjette gang, de to lande gennemfører en "
        "fælles patrulje.",
    ),
    (
        "nb",
        "Kinesiske styrker deltar i russisk militærøvelse",
        "Over 3000 kinesiske soldater deltar i den russiske øvelsen Vostok i Øst-Russland, "
        "opplyser forsvarsdepartementet i Moskva.",
    ),
    (
        "uk",
        "Російські та китайські бомбардувальники провели спільне патрулювання",
        "Літаки двох країн пролетіли над Японським морем. Японія підняла в повітря винищувачі.",
    ),
    (
        "zh-Hans",
        "俄罗斯国防部：俄中军舰完成第三次海上联合巡逻",
        "俄罗斯太平洋舰队和中国海军舰艇组成的编队在太平洋西部完成了联合巡逻任务。",
    ),
    (
        "zh-Hans",
        "韩国战机紧急升空应对中俄军机",
        "4架俄罗斯和2架中国轰炸机周四进入韩国防空识别区，约20分钟后离开。",
    ),
    (
        "zh-Hant",
        "中俄轟炸機聯合巡航 日韓戰機緊急升空",
        "中國和俄羅斯的轟炸機在日本海上空進行聯合空中戰略巡航，日本和南韓空軍緊急派出戰機應對。",
    ),
    (
        "ja",
        "中国とロシアの爆撃機が日本周辺で共同飛行",
        "防衛省によると、中国軍とロシア軍の爆撃機計4機が日本海から東シナ海にかけて共同飛行した。"
        "航空自衛隊の戦闘機が緊急発進した。",
    ),
    (
        "ko",
        "중러 폭격기, 카디즈 진입…합동 비행",
        "중국과 러시아 군용기 6대가 한국방공식별구역에 진입했다가 이탈했다. 합참은 전투기를 "
        "출격시켰다.",
    ),
    (
        "ar",
        "قاذفات صينية وروسية تجري دورية مشتركة قرب اليابان",
        "قالت وزارة الدفاع اليابانية إن قاذفتين صينيتين وقاذفتين روسيتين حلقتا فوق بحر اليابان "
        "في دورية جوية مشتركة.",
    ),
]

# (language, kind, title, body): none may be flagged.
NEAR_MISSES: list[tuple[str, str, str, str]] = [
    (
        "en",
        "trade",
        "China and Russia sign gas deal as trade hits a record",
        "Russia will supply more natural gas to China under a new 30-year agreement. "
        "Bilateral trade rose by a fifth last year, customs data showed.",
    ),
    (
        "de",
        "diplomacy",
        "Putin empfängt Xi in Moskau",
        "Russland und China wollen ihre strategische Partnerschaft vertiefen, sagte Putin "
        "nach dem Treffen. Beide Seiten unterzeichneten Abkommen über Handel und Energie.",
    ),
    (
        "zh-Hans",
        "diplomacy",
        "中俄在联合国安理会否决决议草案",
        "中国和俄罗斯周二在联合国安理会对一项决议草案投了反对票。两国发表联合声明，呼吁通过对话解决危机。",
    ),
    (
        "ru",
        "Ukraine war",
        "Российские войска продолжают наступление в Донбассе",
        "Армия России нанесла удары по позициям ВСУ. Украина сообщила о новых атаках "
        "беспилотников на Киев.",
    ),
    (
        "en",
        "Ukraine war",
        "China calls for ceasefire in Ukraine",
        "Beijing urged Russia and Ukraine to return to peace talks. China has not condemned "
        "the invasion and says it does not supply weapons to either side.",
    ),
    (
        "en",
        "US-China tension",
        "US destroyer sails through the Taiwan Strait",
        "The Chinese military said it tracked the American warship and that its navy held "
        "drills near Taiwan. Beijing accused Washington of provocation.",
    ),
    (
        "zh-Hans",
        "one country's drills",
        "解放军东部战区在台湾岛周边开展联合演习",
        "中国人民解放军东部战区组织海空兵力在台湾岛周边进行联合演训。演习持续三天。",
    ),
    (
        "ru",
        "one country's drills",
        "Российские войска начали учения на Дальнем Востоке",
        "В маневрах участвуют около 50 тысяч военнослужащих и сотни единиц техники, "
        "сообщили в Минобороны.",
    ),
    (
        "en",
        "Russia with a third country",
        "Russia and Belarus launch joint military exercises",
        "Thousands of Russian troops arrived in Belarus for the drills. NATO said it was "
        "watching closely.",
    ),
    (
        "fr",
        "Russia with a third country",
        "La Russie et l'Inde mènent des exercices navals conjoints",
        "Des navires russes et indiens participent à des manœuvres dans le golfe du Bengale.",
    ),
    (
        "es",
        "China with a third country",
        "China y Pakistán realizan ejercicios aéreos conjuntos",
        "Aviones de combate de ambos países participan en las maniobras en la provincia de Sindh.",
    ),
    (
        "en",
        "others drilling against both",
        "US and Japan hold joint drills amid concern over China and Russia",
        "American and Japanese warships exercised off Okinawa this week. Officials in Tokyo "
        "cited growing pressure from China and Russia.",
    ),
    (
        "en",
        "both reacting to others' drills",
        "Russia and China condemn US-South Korea joint drills",
        "Moscow and Beijing said the annual exercises raised tension on the Korean peninsula. "
        "Seoul said the drills were defensive.",
    ),
    (
        "nb",
        "trade",
        "Kina og Russland øker handelen",
        "Handelen mellom Kina og Russland økte kraftig i fjor, viser tall fra kinesisk toll. "
        "Russland selger mer olje og gass til Kina.",
    ),
    (
        "zh-Hans",
        "trade",
        "中俄领导人讨论扩大贸易合作",
        "中国和俄罗斯领导人同意扩大能源和农产品贸易，并加强在联合国的协调。",
    ),
    (
        "ru",
        "trade",
        "Китай и Россия подписали соглашение о поставках газа",
        "Газпром будет поставлять в КНР 10 млрд кубометров газа ежегодно по новому маршруту.",
    ),
    (
        "uk",
        "Ukraine war",
        "Китай закликав Росію та Україну до переговорів",
        "Міністр закордонних справ Китаю заявив, що Пекін підтримує мирне врегулювання війни.",
    ),
    (
        "en",
        "Ukraine war",
        "China says it does not send weapons to Russia",
        "Beijing denied supplying weapons to Russia for the war in Ukraine and said it kept "
        "strict export controls.",
    ),
    (
        "ja",
        "US-China tension",
        "米中国防相が電話会談",
        "米国と中国の国防相が電話で会談し、台湾海峡をめぐる緊張の緩和について協議した。",
    ),
    (
        "ar",
        "diplomacy",
        "الصين وروسيا تستخدمان حق النقض ضد قرار في مجلس الأمن",
        "استخدمت الصين وروسيا حق النقض ضد مشروع قرار بشأن سوريا في مجلس الأمن الدولي.",
    ),
    (
        "sv",
        "one country's drills",
        "Ryssland inleder stor militärövning i Östersjön",
        "Över 20 fartyg deltar i övningen, enligt ryska försvarsministeriet. Nato följer "
        "övningen noga.",
    ),
    (
        "fr",
        "one country's drills",
        "La Chine organise des manœuvres autour de Taïwan",
        "L'armée chinoise a lancé des exercices militaires de grande ampleur autour de l'île, "
        "a annoncé Pékin.",
    ),
    (
        "en",
        "one country's drills",
        "Russian warships hold drills in the South China Sea",
        "The Pacific Fleet said three ships practised air defence. Vietnam and the Philippines "
        "were informed in advance.",
    ),
    (
        "nl",
        "Russia with a third country",
        "Rusland en Belarus houden gezamenlijke militaire oefening",
        "Duizenden Russische soldaten zijn in Belarus aangekomen voor de oefening. De NAVO "
        "volgt de ontwikkelingen.",
    ),
    (
        "de",
        "others drilling against both",
        "NATO-Manöver als Antwort auf China und Russland",
        "Die Allianz hält im Pazifik gemeinsame Übungen mit Japan und Australien ab, um China "
        "und Russland abzuschrecken.",
    ),
    (
        "es",
        "others drilling against both",
        "Estados Unidos y Japón realizan ejercicios conjuntos ante la presión de China y Rusia",
        "Buques de ambos países participan en las maniobras al sur de Okinawa.",
    ),
    (
        "zh-Hans",
        "others drilling against both",
        "美日在东海举行联合演习 应对中俄压力",
        "美国和日本海军舰艇在东海举行联合演习，以应对中俄日益增长的军事压力。",
    ),
    (
        "ru",
        "both reacting to others' drills",
        "Россия и Китай выступили против учений США и Южной Кореи",
        "Москва и Пекин призвали Вашингтон отказаться от военных учений у границ КНДР.",
    ),
    (
        "zh-Hans",
        "both reacting to others' drills",
        "中俄反对美韩联合军演",
        "中国和俄罗斯外交部发言人表示，美韩联合军演加剧了半岛紧张局势。",
    ),
    (
        "ko",
        "both reacting to others' drills",
        "중국과 러시아, 한미 연합훈련 규탄",
        "중국과 러시아 외교부는 한미 연합훈련이 긴장을 높인다고 비난했다.",
    ),
    (
        "en",
        "others drilling against both",
        "Pentagon warns of Sino-Russian threat as US Navy exercises in the Pacific",
        "The report said US forces must prepare for a joint challenge. Navy ships held drills "
        "near Guam this week.",
    ),
    (
        "en",
        "others drilling, the pair watching",
        "NATO begins exercises in the Baltic as Russia and China watch",
        "Thousands of troops from twenty countries are taking part in the drills.",
    ),
    (
        "en",
        "others drilling, the pair doing something else",
        "US, Japan hold joint drills while China and Russia deepen trade",
        "The allies practised air defence near Okinawa this week.",
    ),
    (
        "es",
        "others drilling, the pair as object",
        "Ejercicios de la OTAN preocupan a China y Rusia",
        "Los aliados realizan maniobras en el mar Báltico con miles de soldados.",
    ),
    (
        "en",
        "parallel, not joint",
        "Russia and China are both modernising their navies, Pentagon says",
        "A Pentagon report said Russia and China were expanding their fleets and nuclear arsenals.",
    ),
]


def test_seed_story_is_flagged(ruleset: RuleSet) -> None:
    title, _, body = SEED.read_text(encoding="utf-8").partition("\n")
    matched, score, failed = verdict(ruleset, title.strip(), body.strip())
    assert matched, failed
    assert score >= 2 * ruleset.rules[0].threshold


@pytest.mark.parametrize(("lang", "title", "body"), POSITIVES, ids=[p[0] for p in POSITIVES])
def test_positive(ruleset: RuleSet, lang: str, title: str, body: str) -> None:
    matched, score, failed = verdict(ruleset, title, body)
    assert matched, (lang, score, failed)


@pytest.mark.parametrize(
    ("lang", "kind", "title", "body"),
    NEAR_MISSES,
    ids=[f"{n[0]}-{n[1].replace(' ', '_')}" for n in NEAR_MISSES],
)
def test_near_miss(ruleset: RuleSet, lang: str, kind: str, title: str, body: str) -> None:
    matched, score, _ = verdict(ruleset, title, body)
    assert not matched, (lang, kind, score)


def test_covers_every_required_language() -> None:
    required = {"en", "nb", "nn", "sv", "da", "de", "fr", "es", "pt", "nl", "ru", "uk"}
    required |= {"zh-Hans", "zh-Hant", "ja", "ko", "ar"}
    assert required <= {p[0] for p in POSITIVES}


# Russian case endings: the pair in nominative, genitive, instrumental and
# adjective forms.
RUSSIAN_FORMS = [
    "Совместные учения России и Китая начались в Японском море",
    "Россия и Китай начали совместные учения в Японском море",
    "Китаем и Россией проведены совместные военно-морские учения",
    "Российские и китайские корабли начали совместные учения",
    "Российско-китайские военно-морские учения начались в Японском море",
]


@pytest.mark.parametrize("title", RUSSIAN_FORMS)
def test_russian_case_forms(ruleset: RuleSet, title: str) -> None:
    body = "Учения продлятся пять дней, сообщили в Минобороны."
    matched, score, failed = verdict(ruleset, title, body)
    assert matched, (title, score, failed)


# Norwegian compounds: the term must land inside the compound word.
NORWEGIAN_COMPOUNDS = [
    ("Kina og Russland i ny fellesøvelse", "Fellesøvelsen varer i ti dager.", "fellesøvelse"),
    (
        "Kina og Russland skal ha felles kamptrening",
        "Soldatene skal trene sammen i Nord-Kina.",
        "kamptrening",
    ),
    (
        "Kinesiske og russiske atombombefly fløy sammen over Japanhavet",
        "Japan sendte jagerfly for å følge flyene.",
        "atombombefly",
    ),
    (
        "Kina og Russland startar ei felles marineøving",
        "Marineøvinga skal vare i fem dagar.",
        "marineøving",
    ),
]


@pytest.mark.parametrize(("title", "body", "word"), NORWEGIAN_COMPOUNDS)
def test_norwegian_compounds(ruleset: RuleSet, title: str, body: str, word: str) -> None:
    (result,) = match_story(Story(title, "", body), ruleset)
    assert result.matched, result.failed
    assert word in {h.text.casefold() for h in result.hits}


def test_passing_mention_is_not_enough(ruleset: RuleSet) -> None:
    """One sentence deep in a story about something else does not flag it;
    the same sentence as the headline does (the score weighs the title)."""
    sentence = "Last month Chinese and Russian bombers flew a joint patrol over the Sea of Japan."
    filler = (
        "The destroyer sailed through the strait on Tuesday, the navy said. Officials called "
        "the transit routine. Beijing protested and said it had tracked the ship. "
    )
    body = filler * 4 + sentence + " " + filler * 2
    passing, score, _ = verdict(ruleset, "US destroyer sails through the Taiwan Strait", body)
    assert not passing, score
    headline, score, failed = verdict(ruleset, sentence, filler)
    assert headline, (score, failed)


def test_chinese_pair_must_share_the_clause(ruleset: RuleSet) -> None:
    """Chinese drills in one clause and Russia in the next are not a joint drill."""
    matched, _, _ = verdict(
        ruleset, "中国举行军演，俄罗斯表示关注", "中国海军在东海举行演习，俄罗斯外交部表示关注。"
    )
    assert not matched
    matched, _, failed = verdict(ruleset, "中国和俄罗斯举行联合军演", "两国海军在日本海举行演习。")
    assert matched, failed


def test_rule_needs_both_countries(ruleset: RuleSet) -> None:
    """Both names are required at the root, so the matcher's candidate index
    skips stories without them (speed with many rules)."""
    (rule,) = ruleset.rules
    assert rule.required == ("china", "russia")


def test_regex_terms_compile_with_re() -> None:
    """Other tools (bench/matcher.py) run the terms with the standard re
    module and join a concept's regexes with '|': no variable-width
    look-behind, no global inline flags."""
    ruleset = load_rules([PACK])
    for concept in ruleset.concepts.values():
        keys = [t.key for t in concept.terms if t.form == "regex"]
        for key in keys:
            re.compile(key)
        if keys:
            re.compile("|".join(keys))


def test_each_spelling_listed_once() -> None:
    """A term listed under two language keys would be found twice."""
    pack = yaml.safe_load(PACK.read_text(encoding="utf-8"))
    for name, concept in pack["concepts"].items():
        keys = Counter(
            parse_term(t if isinstance(t, str) else t["term"], lang)
            for lang, terms in concept["terms"].items()
            for t in terms
        )
        twice = [k for k, n in keys.items() if n > 1]
        assert not twice, (name, twice)
