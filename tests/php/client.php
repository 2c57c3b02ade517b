<?php
// A php-gearman client used as a real peer: php client.php HOST:PORT FUNCTION JSON
// Submits serialize(json_decode(JSON, true)) in the foreground and prints the result;
// an answer in serialize() form (as a PHP client expects) is printed as JSON.
[$host, $port] = explode(':', $argv[1]);
$client = new GearmanClient();
$client->addServer($host, (int)$port);
$result = $client->doNormal($argv[2], serialize(json_decode($argv[3], true)));
if ($client->returnCode() != GEARMAN_SUCCESS) {
    fwrite(STDERR, "gearman error: " . $client->returnCode() . "\n");
    exit(1);
}
$value = @unserialize($result);
echo ($value !== false || $result === serialize(false)) ? json_encode($value) : $result;
