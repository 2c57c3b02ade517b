<?php
// A PHP peer for tests/test_php_codec.py, with no server.
//   php serialize.php roundtrip  < lines of base64(serialize() bytes)
//       prints, a line each, base64(serialize(unserialize(line))), or "ERR" when
//       PHP's unserialize() refuses the line.
//   php serialize.php samples
//       prints NAME TAB base64(serialize(value)) for the values the test knows.
//   php serialize.php submit HOST:PORT
//       sends each value as serialize() to a gearctl worker (tests/plugins_php):
//       doNormal to wk_describe (prints NAME TAB json_encode(unserialize(answer))),
//       doNormal to wk_decode, which returns what it got (prints NAME TAB "same" when
//       serialize(unserialize(answer)) is serialize(value), else the answer in base64),
//       and doBackground to wk_record with NAME as the unique key.
class Account {
    public $name = 'ann';
    protected $balance = 10;
    private $pin = '1234';
}
class Child extends Account {
    private $pin = 'child';   // a private of the same name in a subclass
}
enum Suit: string { case Hearts = 'H'; case Spades = 'S'; }

if (($argv[1] ?? '') === 'roundtrip') {
    while (($line = fgets(STDIN)) !== false) {
        $value = @unserialize(base64_decode(trim($line)));
        $ok = $value !== false || base64_decode(trim($line)) === 'b:0;';
        echo $ok ? base64_encode(serialize($value)) : 'ERR', "\n";
    }
    exit(0);
}

$shared = ['x' => 1];
$refs = [&$shared, &$shared];
$obj = new stdClass;
$obj->a = 1;
$obj->list = [1, 2];
$self = new stdClass;
$self->me = $self;
$same = new stdClass;
$samples = [
    'null' => null, 'true' => true, 'false' => false,
    'int' => 42, 'negint' => -7, 'intmax' => PHP_INT_MAX,
    'float01' => 0.1, 'float1e100' => 1e100, 'inf' => INF, 'neginf' => -INF, 'nan' => NAN, 'negzero' => -0.0,
    'utf8' => 'Zoë', 'binary' => "\xff\xfe\x00a", 'empty' => '',
    'list' => [1, 'two', 3.5], 'emptyarray' => [],
    'sparse' => [3 => 'a', 7 => 'b'], 'assoc' => ['b' => 1, 'a' => 2, 5 => 'five'],
    'nested' => ['uids' => [1, 2, 3], 'meta' => ['by' => 'cron', 'at' => null]],
    'mixedstrings' => ['ok' => 'text', 'bad' => "\xc3\x28"],
    'stdclass' => $obj, 'account' => new Account, 'child' => new Child,
    'refs' => $refs, 'self' => $self, 'sameobj' => [$same, $same],
    'enum' => Suit::Hearts, 'enums' => [Suit::Hearts, Suit::Spades],
    'bigfloat' => 12345678901234567890,
];
if (($argv[1] ?? '') === 'submit') {
    $client = new GearmanClient();
    $client->addServers($argv[2]);
    foreach ($samples as $name => $value) {
        $described = $client->doNormal('wk_describe', serialize($value));
        echo "describe\t$name\t", json_encode(unserialize($described)), "\n";
        $back = $client->doNormal('wk_decode', serialize($value));
        echo "echo\t$name\t", serialize(unserialize($back)) === serialize($value) ? 'same' : base64_encode($back), "\n";
        $client->doBackground('wk_record', serialize($value), $name);
        if ($client->returnCode() !== GEARMAN_SUCCESS) {
            echo "background\t$name\tfailed\n";
        }
    }
    exit(0);
}
foreach ($samples as $name => $value) {
    echo $name, "\t", base64_encode(serialize($value)), "\n";
}
