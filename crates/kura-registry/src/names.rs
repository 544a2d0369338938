//! Japanese personal names (kanji with full-width katakana reading) from lists of common surnames
//! and given names, and the kana spelling variants real forms carry (half-width katakana, no
//! space, ideographic space) that the snapshot build must fold back into one person.

use crate::rng::{index, Cumulative, PatientRng};
use rand::Rng;

/// Common surnames, roughly in frequency order (kanji, katakana).
pub(crate) const SURNAMES: &[(&str, &str)] = &[
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("石井", "イシイ"),
    ("小川", "オガワ"),
    ("前田", "マエダ"),
    ("岡田", "オカダ"),
    ("長谷川", "ハセガワ"),
    ("藤田", "フジタ"),
    ("後藤", "ゴトウ"),
    ("近藤", "コンドウ"),
    ("村上", "ムラカミ"),
    ("遠藤", "エンドウ"),
    ("青木", "アオキ"),
    ("坂本", "サカモト"),
    ("斉藤", "サイトウ"),
    ("福田", "フクダ"),
    ("太田", "オオタ"),
    ("西村", "ニシムラ"),
    ("藤井", "フジイ"),
    ("金子", "カネコ"),
    ("岡本", "オカモト"),
    ("藤原", "フジワラ"),
    ("中野", "ナカノ"),
    ("三浦", "ミウラ"),
    ("原田", "ハラダ"),
    ("中川", "ナカガワ"),
    ("松田", "マツダ"),
    ("竹内", "タケウチ"),
    ("小野", "オノ"),
    ("田村", "タムラ"),
    ("中山", "ナカヤマ"),
    ("和田", "ワダ"),
    ("石田", "イシダ"),
    ("森田", "モリタ"),
    ("上田", "ウエダ"),
    ("原", "ハラ"),
    ("内田", "ウチダ"),
    ("柴田", "シバタ"),
    ("酒井", "サカイ"),
    ("宮崎", "ミヤザキ"),
    ("横山", "ヨコヤマ"),
    ("高木", "タカギ"),
    ("安藤", "アンドウ"),
    ("宮本", "ミヤモト"),
    ("大野", "オオノ"),
    ("小島", "コジマ"),
    ("谷口", "タニグチ"),
    ("今井", "イマイ"),
    ("工藤", "クドウ"),
    ("高田", "タカダ"),
    ("増田", "マスダ"),
    ("丸山", "マルヤマ"),
    ("杉山", "スギヤマ"),
    ("村田", "ムラタ"),
    ("大塚", "オオツカ"),
    ("新井", "アライ"),
    ("小山", "コヤマ"),
    ("平野", "ヒラノ"),
    ("藤本", "フジモト"),
    ("河野", "コウノ"),
    ("上野", "ウエノ"),
    ("野口", "ノグチ"),
    ("武田", "タケダ"),
    ("松井", "マツイ"),
    ("千葉", "チバ"),
    ("岩崎", "イワサキ"),
    ("菅原", "スガワラ"),
    ("木下", "キノシタ"),
    ("久保", "クボ"),
    ("佐野", "サノ"),
    ("野村", "ノムラ"),
    ("松尾", "マツオ"),
    ("市川", "イチカワ"),
    ("菊地", "キクチ"),
];

/// Given names by sex and generation (0: born before 1960, 1: 1960-1989, 2: 1990 on).
const FEMALE: [&[(&str, &str)]; 3] = [
    &[
        ("和子", "カズコ"),
        ("幸子", "サチコ"),
        ("節子", "セツコ"),
        ("恵子", "ケイコ"),
        ("京子", "キョウコ"),
        ("洋子", "ヨウコ"),
        ("美智子", "ミチコ"),
        ("悦子", "エツコ"),
        ("文子", "フミコ"),
        ("静子", "シズコ"),
        ("久子", "ヒサコ"),
        ("千代子", "チヨコ"),
        ("花子", "ハナコ"),
        ("トミ", "トミ"),
    ],
    &[
        ("陽子", "ヨウコ"),
        ("久美子", "クミコ"),
        ("由美子", "ユミコ"),
        ("真由美", "マユミ"),
        ("明美", "アケミ"),
        ("智子", "トモコ"),
        ("裕子", "ユウコ"),
        ("直美", "ナオミ"),
        ("恵美", "エミ"),
        ("典子", "ノリコ"),
        ("順子", "ジュンコ"),
        ("由紀", "ユキ"),
        ("美穂", "ミホ"),
        ("愛", "アイ"),
        ("千尋", "チヒロ"),
    ],
    &[
        ("彩", "アヤ"),
        ("舞", "マイ"),
        ("陽菜", "ヒナ"),
        ("結衣", "ユイ"),
        ("葵", "アオイ"),
        ("さくら", "サクラ"),
        ("美咲", "ミサキ"),
        ("七海", "ナナミ"),
        ("凛", "リン"),
        ("結菜", "ユイナ"),
        ("芽依", "メイ"),
        ("紬", "ツムギ"),
        ("陽葵", "ヒマリ"),
        ("里奈", "リナ"),
        ("優花", "ユウカ"),
    ],
];

const MALE: [&[(&str, &str)]; 3] = [
    &[
        ("茂", "シゲル"),
        ("博", "ヒロシ"),
        ("実", "ミノル"),
        ("清", "キヨシ"),
        ("勇", "イサム"),
        ("進", "ススム"),
        ("正男", "マサオ"),
        ("和夫", "カズオ"),
        ("一郎", "イチロウ"),
        ("昭", "アキラ"),
        ("豊", "ユタカ"),
        ("武", "タケシ"),
        ("三郎", "サブロウ"),
    ],
    &[
        ("隆", "タカシ"),
        ("誠", "マコト"),
        ("浩", "ヒロシ"),
        ("健一", "ケンイチ"),
        ("修", "オサム"),
        ("哲也", "テツヤ"),
        ("直樹", "ナオキ"),
        ("大輔", "ダイスケ"),
        ("拓也", "タクヤ"),
        ("剛", "ツヨシ"),
        ("聡", "サトシ"),
        ("学", "マナブ"),
        ("亮", "リョウ"),
    ],
    &[
        ("健太", "ケンタ"),
        ("翔太", "ショウタ"),
        ("大樹", "ダイキ"),
        ("蓮", "レン"),
        ("悠真", "ユウマ"),
        ("陽翔", "ハルト"),
        ("湊", "ミナト"),
        ("大翔", "ヒロト"),
        ("悠斗", "ユウト"),
        ("颯太", "ソウタ"),
        ("樹", "イツキ"),
        ("翔", "ショウ"),
        ("蒼", "アオイ"),
    ],
];

/// A person's name as indices into the tables, so a marriage only swaps the surname.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Name {
    pub surname: usize,
    pub given: (&'static str, &'static str),
}

pub(crate) struct NameTables {
    surnames: Cumulative,
}

impl NameTables {
    pub(crate) fn new() -> Self {
        // Zipf-like: the commonest surnames are a few percent of the population each.
        NameTables {
            surnames: Cumulative::new((0..SURNAMES.len()).map(|r| 1.0 / (r as f64 + 4.0))),
        }
    }

    pub(crate) fn surname(&self, rng: &mut PatientRng) -> usize {
        self.surnames.sample(rng)
    }

    pub(crate) fn person(&self, rng: &mut PatientRng, female: bool, birth_year: i32) -> Name {
        let generation = if birth_year < 1960 {
            0
        } else if birth_year < 1990 {
            1
        } else {
            2
        };
        let list = if female {
            FEMALE[generation]
        } else {
            MALE[generation]
        };
        let given = list[index(rng, list.len())];
        Name {
            surname: self.surname(rng),
            given,
        }
    }
}

impl Name {
    pub(crate) fn kanji(&self) -> String {
        format!(
            "{} {}",
            SURNAMES[self.surname % SURNAMES.len()].0,
            self.given.0
        )
    }

    /// The canonical spelling: full-width katakana, surname and given name separated by one
    /// ASCII space.
    pub(crate) fn kana(&self) -> String {
        format!(
            "{} {}",
            SURNAMES[self.surname % SURNAMES.len()].1,
            self.given.1
        )
    }

    /// The kana as written on one form: usually canonical, sometimes a variant.
    pub(crate) fn kana_as_written(&self, rng: &mut PatientRng) -> String {
        let canonical = self.kana();
        match rng.random_range(0..100u32) {
            0..=84 => canonical,
            85..=89 => canonical.replace(' ', ""),
            90..=94 => canonical.replace(' ', "\u{3000}"),
            95..=98 => to_half_width(&canonical),
            _ => to_half_width(&canonical).replace(' ', ""),
        }
    }
}

/// Full-width katakana to half-width (JIS X 0201) katakana; voiced sounds become a base letter
/// plus a separate sound mark, as on legacy systems. Other characters pass through.
pub(crate) fn to_half_width(s: &str) -> String {
    const PLAIN: &str =
        "アｱイｲウｳエｴオｵカｶキｷクｸケｹコｺサｻシｼスｽセｾソｿタﾀチﾁツﾂテﾃトﾄナﾅニﾆヌﾇネﾈノﾉ\
ハﾊヒﾋフﾌヘﾍホﾎマﾏミﾐムﾑメﾒモﾓヤﾔユﾕヨﾖラﾗリﾘルﾙレﾚロﾛワﾜヲｦンﾝァｧィｨゥｩェｪォｫャｬュｭョｮッｯーｰ";
    let pairs: Vec<(char, char)> = {
        let chars: Vec<char> = PLAIN.chars().collect();
        chars
            .chunks(2)
            .filter_map(|p| Some((*p.first()?, *p.get(1)?)))
            .collect()
    };
    let half = |c: char| pairs.iter().find(|(f, _)| *f == c).map(|(_, h)| *h);
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if let Some(h) = half(c) {
            out.push(h);
            continue;
        }
        let code = c as u32;
        let base = |d: u32| char::from_u32(code - d).and_then(half);
        // In Unicode the voiced form of カ..ト and ハ..ホ follows its base letter (+1) and the
        // semi-voiced パ..ポ follows at +2.
        let voiced = ('ガ'..='ド').contains(&c) || ('バ'..='ボ').contains(&c);
        let semi = ('パ'..='ポ').contains(&c);
        match (c, semi, voiced) {
            ('ヴ', _, _) => out.push_str("ｳﾞ"),
            (_, true, _) if (code - 0x30CF) % 3 == 2 => {
                if let Some(h) = base(2) {
                    out.push(h);
                    out.push('ﾟ');
                } else {
                    out.push(c);
                }
            }
            (_, _, true) => match base(1) {
                Some(h) => {
                    out.push(h);
                    out.push('ﾞ');
                }
                None => out.push(c),
            },
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_width_handles_voiced_and_semi_voiced() {
        assert_eq!(to_half_width("ヤマダ ハナコ"), "ﾔﾏﾀﾞ ﾊﾅｺ");
        assert_eq!(to_half_width("ゴトウ"), "ｺﾞﾄｳ");
        assert_eq!(to_half_width("ジュンコ"), "ｼﾞｭﾝｺ");
        assert_eq!(to_half_width("パブロ"), "ﾊﾟﾌﾞﾛ");
        assert_eq!(to_half_width("ショウタ"), "ｼｮｳﾀ");
    }

    #[test]
    fn every_listed_kana_converts_fully() {
        let all = SURNAMES
            .iter()
            .chain(FEMALE.iter().flat_map(|l| l.iter()))
            .chain(MALE.iter().flat_map(|l| l.iter()));
        for (_, kana) in all {
            let half = to_half_width(kana);
            assert!(
                half.chars().all(|c| ('\u{FF61}'..='\u{FF9F}').contains(&c)),
                "{kana} -> {half}"
            );
        }
    }
}
